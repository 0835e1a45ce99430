"""The README's Colored MNIST tables are what the report makes of the committed
restart files, and the table of a run is what its command prints."""
from pathlib import Path

from colored_mnist import cli, readme
from tests.colored_mnist.test_runner import tiny_flags

README = Path(readme.__file__).resolve().parents[1] / "README.md"


def test_the_readmes_tables_are_those_of_the_committed_restarts():
    text = README.read_text()
    flags = readme.blocks(text)
    settings = {f.split("--setting ")[1].split()[0] for f in flags}
    assert {"correlation_shift", "label_shift"} <= settings
    assert all("--train_size 20000" in f and "--output_dir results/" in f for f in flags)
    assert readme.render(text, README.parent) == text, \
        "README tables differ from the saved restarts: run python -m colored_mnist.readme"


def test_a_block_is_what_the_command_prints_and_only_its_run(idx_folder, tmp_path, capsys):
    folder = idx_folder[0]
    out = tmp_path / "out"
    assert cli.main(tiny_flags(folder, out, "--algorithms", "ERM", "VREx", "--restarts",
                               "2", "--workers", "1")) == 0
    printed = capsys.readouterr().out
    flags = " ".join(tiny_flags(folder, "out", "--algorithms", "ERM", "VREx",
                                "--restarts", "2"))
    page = f"# Results\n\n<!-- cmnist-table: {flags} -->\nstale\n<!-- /cmnist-table -->\n"
    (tmp_path / "README.md").write_text(page)
    assert readme.main(["--readme", str(tmp_path / "README.md"), "--check"]) == 1
    assert readme.main(["--readme", str(tmp_path / "README.md")]) == 0
    rendered = (tmp_path / "README.md").read_text()
    table = rendered.split(" -->\n")[1].split("<!-- /cmnist-table")[0]
    assert table.strip() and table.strip() in printed
    assert "| ERM | 2 |" in table and "| VREx | 2 |" in table
    assert readme.main(["--readme", str(tmp_path / "README.md"), "--check"]) == 0
    # A table of one restart reads restart 0 alone, though restart 1 is saved.
    one = page.replace("--restarts 2", "--restarts 1")
    assert "| ERM | 1 |" in readme.render(one, tmp_path)


def test_the_readmes_commands_train_nothing_that_is_committed():
    """Every committed restart of a README run is one its command reuses, data
    included: the plan, with the fingerprint of the Fashion-MNIST files here (those
    Debian's package installs), counts it done, so a rerun trains only what is not
    committed and never refuses a committed file."""
    import glob
    import os

    from colored_mnist import runner, sources
    from tests.colored_mnist.test_efficacy import _data_or_skip
    _data_or_skip()
    flags = readme.blocks(README.read_text())
    images, classes = sources.load("fashion_mnist", None)
    fingerprint = sources.fingerprint(images, classes)
    for block in flags:
        args, spec, algorithms, _ = readme._run(block, README.parent)
        spec.data_fingerprint = fingerprint
        done, pending = runner.plan(spec, algorithms, args.restarts)
        committed = {(os.path.basename(os.path.dirname(path)),
                      int(os.path.basename(path)[len("restart_"):-len(".json")]))
                     for path in glob.glob(os.path.join(args.output_dir, args.setting, "*",
                                                        "restart_*.json"))}
        assert set(done) == {job for job in committed if job[1] < args.restarts}
        assert set(pending) == {(a, r) for a in algorithms for r in range(args.restarts)
                                } - set(done)
