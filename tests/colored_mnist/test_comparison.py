"""What the tables say, computed: verdicts against the best baseline, the final
Hessian distances, accuracy against the training size (and the README's blocks of
them, rendered from real tiny runs)."""
import pytest

from colored_mnist import cli, comparison, readme
from tests.colored_mnist.test_runner import tiny_flags


def _row(name, mean, std, restarts=3):
    return {"algorithm": name, "restarts": restarts, "test_acc_mean": mean,
            "test_acc_std": std}


def test_each_hessian_method_meets_the_best_baseline_and_a_verdict():
    rows = [_row("ERM", 90.0, 0.1), _row("IRM", 70.0, 1.0), _row("VREx", 71.0, 2.0),
            _row("Fishr", 72.0, 0.5), _row("HGP", 75.0, 1.0), _row("Hutchinson", 73.0, 1.0),
            _row("HutchinsonExact", 60.0, 0.5, restarts=1)]
    found = {r["method"]: r for r in comparison.against_baselines(rows)}
    assert {r["baseline"] for r in found.values()} == {"Fishr"}  # ERM is no baseline
    assert found["HGP"]["verdict"] == "higher" and found["HGP"]["difference"] == 3.0
    assert found["Hutchinson"]["verdict"] == "within the spread"  # 1.0 <= 1.0 + 0.5
    assert found["HutchinsonExact"]["verdict"] == "no spread (1 restart)"
    assert found["HutchinsonExact"]["difference"] == -12.0
    lower = comparison.against_baselines([_row("IRM", 70.0, 0.2), _row("HGP", 60.0, 0.2)])
    assert lower[0]["verdict"] == "lower"
    # Two stds of zero do not make 0.2 points a difference: 10,000 test images carry
    # ~0.5 points of sampling error each (label shift: HutchinsonExact 44.18 and 44.23).
    tied = comparison.against_baselines([_row("VREx", 44.0, 0.1), _row("HGP", 44.2, 0.0)])
    assert tied[0]["verdict"] == "within the spread"
    assert tied[0]["spread"] == pytest.approx(0.1 + 2 * 100 * (0.44 * 0.56 / 1e4) ** 0.5,
                                              abs=0.01)
    small = comparison.against_baselines([_row("VREx", 44.0, 0.1), _row("HGP", 44.2, 0.0)],
                                         test_size=10 ** 8)
    assert small[0]["verdict"] == "higher"  # with a vast test set it would be one
    assert comparison.against_baselines([_row("ERM", 1.0, 0.0), _row("HGP", 2.0, 0.0)]) == []


def _run(algorithm, restart, distances, test=0.5, train=0.6):
    log = [{"step": 10 * i, "hessian_distance": d} for i, d in enumerate(distances)]
    return {"algorithm": algorithm, "restart": restart, "log": log,
            "final": {"train_acc": train, "test_acc": test, "gray_test_acc": 0.5}}


def test_the_distance_ranking_reads_the_last_logged_distance():
    results = {"ERM": [_run("ERM", 0, [0.5, 0.3]), _run("ERM", 1, [0.5, 0.1])],
               "HGP": [_run("HGP", 0, [0.5, 0.05, None])],
               "IRM": [_run("IRM", 0, [None])]}
    assert comparison.distance_ranking(results) == [("HGP", 0.05, 1), ("ERM", 0.2, 2)]
    text = comparison.comparison_markdown([], results)
    assert text.strip() == ("| Method | Test acc | Best baseline | Its test acc | "
                            "Difference | Spread | Verdict |\n|---|---|---|---|---|---|---|"
                            "\n\nFinal "
                            "‖H₀ − H₁‖_F, mean over restarts, smallest first: HGP 5.0e-02, "
                            "ERM 2.0e-01.")


def test_train_size_rows_and_table():
    rows = comparison.train_size_rows({
        200: {"ERM": [_run("ERM", 0, [1], test=0.2, train=0.9)]},
        100: {"ERM": [_run("ERM", 0, [1], test=0.1, train=1.0)],
              "HGP": [_run("HGP", 0, [1], test=0.6, train=0.7)]}})
    assert [(r["algorithm"], r["train_size"]) for r in rows] == [
        ("ERM", 100), ("HGP", 100), ("ERM", 200)]
    assert comparison.train_size_markdown(rows, ["ERM", "HGP"]).splitlines() == [
        "| Algorithm | 100 images | 200 images |", "|---|---|---|",
        "| ERM | 10.0 (100.0) | 20.0 (90.0) |", "| HGP | 60.0 (70.0) | - |"]
    # a requested size without any saved restart is still a column, not left out
    assert comparison.train_size_markdown(rows, ["ERM"], [50, 100, 200]).splitlines()[2] \
        == "| ERM | - | 10.0 (100.0) | 20.0 (90.0) |"


def test_the_readmes_train_size_and_compare_blocks_render_from_real_runs(idx_folder,
                                                                        tmp_path):
    folder = idx_folder[0]
    for size in (150, 200):
        flags = tiny_flags(folder, tmp_path / f"train_{size}", "--algorithms", "ERM", "HGP",
                           "--restarts", "1", "--workers", "1")
        flags[flags.index("--train_size") + 1] = str(size)
        assert cli.main(flags) == 0
    base = " ".join(tiny_flags(folder, "train_{n}", "--algorithms", "ERM", "HGP",
                               "--restarts", "1"))
    base = base.replace("--train_size 200 ", "")
    page = (f"<!-- cmnist-train-size: {base} --sizes 150 200 -->\nstale\n"
            "<!-- /cmnist-train-size -->\n"
            f"<!-- cmnist-compare: {base.replace('train_{n}', 'train_200')} "
            "--train_size 200 -->\nstale\n<!-- /cmnist-compare -->\n")
    (tmp_path / "README.md").write_text(page)
    assert readme.main(["--readme", str(tmp_path / "README.md")]) == 0
    text = (tmp_path / "README.md").read_text()
    assert "| Algorithm | 150 images | 200 images |" in text
    assert "| HGP | " in text and "stale" not in text
    assert "Final ‖H₀ − H₁‖_F, mean over restarts, smallest first: " in text
    assert (tmp_path / "train_size_correlation_shift.png").stat().st_size > 1000
    assert readme.main(["--readme", str(tmp_path / "README.md"), "--check"]) == 0
    assert readme.blocks(text, "train-size") and readme.blocks(text, "compare")


@pytest.mark.parametrize("kind", ["compare", "train-size"])
def test_the_readme_holds_both_settings_of_each_kind(kind):
    text = readme.ROOT.joinpath("README.md").read_text()
    settings = {flags.split("--setting ")[1].split()[0] for flags in readme.blocks(text, kind)}
    assert settings == {"correlation_shift", "label_shift"}


def test_the_readmes_train_size_tables_have_a_column_per_size():
    text = readme.ROOT.joinpath("README.md").read_text()
    for flags in readme.blocks(text, "train-size"):
        sizes = flags.split("--sizes ")[1].split(" --")[0].split()
        table = readme.run_train_size(flags)
        if table != readme.NOTHING:
            assert table.splitlines()[0] == "| Algorithm | " + " | ".join(
                f"{int(size):,} images" for size in sizes) + " |"
