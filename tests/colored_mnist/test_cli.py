"""Bad input: one line naming the bad value and the valid ones, exit status 2."""
import argparse
import os

import pytest

import hessian_dg_cli
from colored_mnist import cli
from colored_mnist.errors import UsageError
from colored_mnist.penalties import ALGORITHMS
from tests.colored_mnist.conftest import synthetic_arrays, write_folder


def run_main(argv, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines()


@pytest.mark.parametrize("argv, expected", [
    (["--algorithms", "HGP", "Foo"], ["'Foo'", "ERM, IRM, VREx, Fishr, HGP, Hutchinson, "
                                      "HutchinsonExact"]),
    (["--setting", "covariate"], ["'covariate'", "correlation_shift, label_shift"]),
    (["--dataset", "cifar"], ["'cifar'", "mnist, fashion_mnist, idx"]),
    (["--dataset", "idx"], ["--data_dir"]),
    (["--steps", "abc"], ["--steps", "'abc'"]),
    (["--steps", "0"], ["--steps 0", ">= 1"]),
    (["--restarts", "-1"], ["--restarts -1"]),
    (["--label_flipping_prob", "1.5"], ["--label_flipping_prob 1.5", "[0, 1]"]),
    (["--workers", "0"], ["--workers 0"]),
    (["--no_such_flag"], ["--no_such_flag"]),
    (["--device", "tpu"], ["'tpu'", "cpu, cuda"]),
])
def test_bad_input_is_one_line(argv, expected, capsys, tmp_path):
    code, lines = run_main(argv + ["--output_dir", str(tmp_path)], capsys)
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("python -m colored_mnist: error:")
    for text in expected:
        assert text in lines[0], (text, lines[0])


def test_missing_or_corrupt_data_is_one_line(tmp_path, capsys):
    code, lines = run_main(["--dataset", "fashion_mnist", "--data_dir", str(tmp_path),
                            "--output_dir", str(tmp_path / "o")], capsys)
    assert code == 2 and len(lines) == 1
    assert os.path.join(str(tmp_path), "train-images-idx3-ubyte") in lines[0]
    assert "apt-get install dataset-fashion-mnist" in lines[0]
    images, classes = synthetic_arrays(30)
    folder = write_folder(tmp_path / "bad", images, classes, gzipped=False)
    with open(os.path.join(folder, "train-labels-idx1-ubyte"), "ab") as handle:
        handle.write(b"xx")
    code, lines = run_main(["--dataset", "idx", "--data_dir", folder, "--output_dir",
                            str(tmp_path / "o")], capsys)
    assert code == 2 and len(lines) == 1
    assert "train-labels-idx1-ubyte" in lines[0] and "expected" in lines[0]


def test_train_size_beyond_the_pool(tmp_path, capsys):
    images, classes = synthetic_arrays(300)
    folder = write_folder(tmp_path / "d", images, classes)
    code, lines = run_main(["--dataset", "idx", "--data_dir", folder, "--val_size", "100",
                            "--train_size", "201", "--output_dir", str(tmp_path)], capsys)
    assert code == 2 and lines == ["python -m colored_mnist: error: --train_size 201: "
                                   "at most 200 here"]


def test_add_parser_wires_a_cmnist_subcommand():
    parser = argparse.ArgumentParser(prog="hessian-dg")
    sub = parser.add_subparsers(dest="subcommand")
    cli.add_parser(sub)
    args = parser.parse_args(["cmnist", "--algorithms", "hgp", "vrex", "--setting",
                              "label_shift", "--n_restarts", "3"])
    assert args.func is cli.execute
    assert args.restarts == 3 and args.setting == "label_shift"
    assert cli._check(args) == ["HGP", "VREx"]
    defaults = parser.parse_args(["cmnist"])
    assert defaults.algorithms == list(ALGORITHMS)
    assert (defaults.steps, defaults.hidden_dim, defaults.penalty_anneal_iters) == \
        (501, 390, 190)
    assert defaults.lr == 0.0004898536566546834
    assert defaults.penalty_weight == 91257.18613115903
    assert defaults.l2_regularizer_weight == 0.00110794568
    assert defaults.label_flipping_prob == 0.25 and defaults.restarts == 10


def test_subcommand_errors_follow_the_entrys_convention(capsys):
    """Under ``hessian-dg`` a refused flag and a bad value are both
    ``hessian-dg: error: ...`` (the entry shows them; the body only raises);
    ``python -m colored_mnist`` says the same in one line of its own."""
    with pytest.raises(SystemExit) as stop:
        hessian_dg_cli.main(["cmnist", "--steps", "x"])
    lines = capsys.readouterr().err.splitlines()
    assert stop.value.code == 2
    assert lines == ["hessian-dg: error: argument --steps: invalid int value: 'x'",
                     "run 'hessian-dg cmnist --help' for its options"]
    assert hessian_dg_cli.main(["cmnist", "--algorithms", "nope"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hessian-dg: error: unknown algorithm 'nope'")
    args = cli.build_parser().parse_args(["--algorithms", "nope"])
    with pytest.raises(UsageError, match="unknown algorithm 'nope'"):
        cli.execute(args)
    with pytest.raises(SystemExit) as stop:
        cli.main(["--steps", "x"])
    assert stop.value.code == 2 and capsys.readouterr().err.splitlines() == [
        "python -m colored_mnist: error: argument --steps: invalid int value: 'x'"]
