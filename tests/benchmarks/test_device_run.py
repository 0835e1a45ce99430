"""benchmarks/device_run.sh --smoke: every stage, tiny sizes, on the CPU, so that the
GPU run cannot rot; and the rules of the output folder."""
import importlib.util
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXPECTED = {"env.txt", "timing.txt", "tests.txt", "benchmarks.txt", "step_cost.json",
            "penalty_cost.json", "cmnist.tar.gz"}


@pytest.fixture(scope="module")
def device_run():
    name = "benchmarks_device_run"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" /
                                                      "device_run.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.mark.integration
def test_smoke_run_writes_every_stage_within_the_output_rules(device_run, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [str(REPO / "benchmarks" / "device_run.sh"), "--smoke", "--out", str(out),
         "--work", str(tmp_path / "work"), "--carry", str(tmp_path / "no_carry")],
        capture_output=True, text=True, timeout=900)
    timing = (out / "timing.txt").read_text()
    assert done.returncode == 0, timing + done.stdout[-3000:] + done.stderr[-3000:]
    assert {p.name for p in out.iterdir()} == EXPECTED
    assert device_run.check_outputs(out) == []
    for stage in device_run.STAGES:
        assert f"\n{stage:<11} ok " in timing, timing
    assert "output folder: ok" in timing
    assert "smoke: pip ran with --dry-run" in timing
    env = (out / "env.txt").read_text()
    assert '"HGP, Hutchinson registered": true' in env and "Would install hessian-dg" in env
    assert "4 passed" in (out / "tests.txt").read_text()
    steps = json.loads((out / "step_cost.json").read_text())
    assert [r["variant"] for r in steps["batch_4"]["results"]] == [
        "erm", "hgp", "hutchinson-s4", "dbp-hutchinson-s4"]
    assert all(r["seconds_per_step"] > 0 for r in steps["batch_4"]["results"])
    penalty = json.loads((out / "penalty_cost.json").read_text())
    assert [r["variant"] for r in penalty["rows"]] == ["hutchinson", "hgp",
                                                       "hgp-double-backprop"]
    with tarfile.open(out / "cmnist.tar.gz") as tar:
        names = tar.getnames()
        restarts = [n for n in names if n.endswith(".json")]
        assert len(restarts) == 6, names  # 2 settings x ERM, HGP, Hutchinson x 1 restart
        saved = json.load(tar.extractfile(restarts[0]))
    assert saved["identity"]["config"]["steps"] == 3 and saved["provenance"]["device"] == "cpu"
    assert any(n.endswith("logs/label_shift.log") for n in names)


def test_output_rules_name_every_breach(device_run, tmp_path):
    for index in range(9):
        (tmp_path / f"file{index}.txt").write_text("x")
    (tmp_path / "bad name.txt").write_text("x")
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "deep.txt").write_text("x")
    with open(tmp_path / "big.bin", "wb") as handle:
        handle.truncate(device_run.MAX_BYTES + 1)
    problems = device_run.check_outputs(tmp_path)
    assert problems[0] == "12 files, at most 8"
    assert "bad name.txt: a name with characters other than A-Z a-z 0-9 . _ -" in problems
    assert "a/b/c/deep.txt: more than 2 folders deep" in problems
    assert any(p.startswith("big.bin:") and "over 16 MiB" in p for p in problems)
    assert len(problems) == 4


def test_unknown_stages_and_a_missing_output_folder_are_refused(device_run, capsys,
                                                                monkeypatch):
    monkeypatch.delenv("OUT", raising=False)
    with pytest.raises(SystemExit):
        device_run.parse_arguments(["--out", "x", "--stages", "tests,gpu"])
    assert "unknown stages ['gpu']; valid stages: install, tests, benchmarks, cmnist" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        device_run.parse_arguments([])
    assert "pass --out DIR or set $OUT" in capsys.readouterr().err
    args = device_run.parse_arguments(["--out", "x", "--stages", "cmnist,tests"])
    assert args.stages == ["tests", "cmnist"] and args.device == "cuda"
    assert device_run.parse_arguments(["--out", "x", "--smoke"]).device == "cpu"
