"""fmnist-sweep as a user runs it: its lines, files and exit codes."""

from __future__ import annotations

import csv
import re
import signal

import pytest

from fmnist_gui.sweep.cli import main
from tests.sweep.conftest import start_sweep_cli, sweep_cli

TINY = ["--jobs", "1", "--threads", "1", "--batch-size", "16", "--no-download"]


def _run_args(root, url, *extra):
    return ["run", "--storage", url, "--data-dir", str(root), *TINY, *extra]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--optimizers", "nope"], "unknown optimizer 'nope'"),
        (["--tune", "momentum=0.9:0.1"], "must be below its high end"),
        (["--tune", "sgd.rho"], "sgd has no parameter 'rho' to tune"),
        (["--tune", "momentum=a:b"], "is not LOW:HIGH numbers"),
        (["--tune", "weight_decay"], "sgd.weight_decay has no upper bound in its schema"),
        (["--set", "sgd.momentum=2"], "momentum: 2 is out of range"),
        (["--trials", "0"], "trials must be a whole number of at least 1"),
        (["--subset", "100000"], "asks for more training images than the data has"),
        (["--jobs", "0"], "--jobs must be at least 1"),
        (["--pruner", "magic"], "invalid choice: 'magic'"),
        (["--study", "a:b"], "sweep name 'a:b'"),
        (["--target", "80"], "target accuracy must be a fraction"),
    ],
)
def test_bad_run_input_is_one_line_and_exit_2(tiny_root, sqlite_url, capsys, args, words):
    assert main(_run_args(tiny_root, sqlite_url, *args)) == 2
    err = capsys.readouterr().err
    assert err.startswith("fmnist-sweep: error: "), err
    assert err.count("\n") == 1, err
    assert words in err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["worker"], "the following arguments are required: --study"),
        (["report", "--storage", "sqlite:////no/such/folder/x.db"], "folder /no/such/folder"),
        (["report", "--storage", "postgresql://u@127.0.0.1:1/db"], "cannot open the sweep storage"),
        (["list", "--storage", "nosuch://x"], "cannot open the sweep storage"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_storage_and_commands_are_one_line_and_exit_2(capsys, args, words):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert words in err, err


def test_joining_a_sweep_that_does_not_exist_names_the_ones_there(tiny_root, sqlite_url, capsys):
    assert (
        main(
            _run_args(
                tiny_root,
                sqlite_url,
                "--study",
                "first",
                "--trials",
                "1",
                "--epochs",
                "1",
                "--seeds",
                "0",
                "--optimizers",
                "sgd",
            )
        )
        == 0
    )
    capsys.readouterr()
    worker = ["worker", "--study", "nope", "--storage", sqlite_url, "--data-dir", str(tiny_root)]
    assert main(worker) == 2
    err = capsys.readouterr().err
    assert "no sweep named 'nope' in this storage (sweeps there: first)" in err


def test_bad_input_in_a_real_process(tiny_root, sqlite_url):
    result = sweep_cli(*_run_args(tiny_root, sqlite_url, "--tune", "nesterov=0:1"))
    assert result.returncode == 2
    assert result.stderr == (
        "fmnist-sweep: error: sgd.nesterov is true or false: it takes no range\n"
    )


def test_run_prints_trials_and_the_table_then_report_writes_csv_and_plots(
    tiny_root, sqlite_url, tmp_path, capsys
):
    args = _run_args(
        tiny_root, sqlite_url, "--optimizers", "sgd,adam", "--trials", "3", "--epochs", "2",
        "--seeds", "2", "--study", "demo", "--tune", "sgd.momentum=0:0.9",
    )  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("new sweep 'demo'")
    assert "tuning sgd: lr 1e-05..1 (log), momentum 0..0.9; adam: lr 1e-05..1 (log)" in out
    assert re.search(r"^sgd trial 0 start: lr=[\d.e-]+, momentum=[\d.e-]+$", out, re.M)
    assert re.search(r"^adam seed run 1 complete: [\d.]+%$", out, re.M)
    table = out[out.index("sweep 'demo': 3 trials") :]
    assert re.search(r"^sgd +3/3 .* 2/2 ", table, re.M)
    assert re.search(r"^adam +3/3 .* 2/2 ", table, re.M)

    report = tmp_path / "report"
    assert main(["report", "--storage", sqlite_url, "--study", "demo", "--out", str(report)]) == 0
    out = capsys.readouterr().out
    assert "sweep 'demo'" in out
    assert f"wrote {report / 'trials.csv'}" in out
    with open(report / "trials.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 3 + 2 * 2
    assert {r["phase"] for r in rows} == {"tune", "seeds"}
    tuned_sgd = [r for r in rows if r["optimizer"] == "sgd" and r["phase"] == "tune"]
    assert all(0 <= float(r["momentum"]) <= 0.9 for r in tuned_sgd)
    # Untuned hyperparameters are written too: what each trial really trained with.
    assert {(r["nesterov"], r["dampening"]) for r in tuned_sgd} == {("false", "0.0")}
    adam_rows = [r for r in rows if r["optimizer"] == "adam"]
    assert {r["betas"] for r in adam_rows} == {"0.9;0.999"}
    assert all(r["accuracy_epoch_1"] for r in rows if r["outcome"] == "complete")
    for name in ("best_so_far.png", "lr_sensitivity.png", "seeds_band.png"):
        data = (report / name).read_bytes()
        assert data.startswith(b"\x89PNG")
        assert len(data) > 10_000

    assert main(["list", "--storage", sqlite_url]) == 0
    assert capsys.readouterr().out == "demo: sgd, adam; 6/6 trials, 4/4 seed runs; complete\n"


def test_run_with_two_worker_processes(tiny_root, sqlite_url, capsys):
    args = _run_args(tiny_root, sqlite_url, "--optimizers", "sgd", "--trials", "4",
                     "--epochs", "1", "--seeds", "1")  # fmt: skip
    args[args.index("--jobs") + 1] = "2"
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 worker(s) x 1 thread(s)" in out
    assert out.count("worker complete: the sweep is complete") == 2
    started = re.findall(r"^\[(\d)\] sgd trial \d+ start", out, re.M)
    assert len(started) == 4
    assert set(started) <= {"0", "1"}


def test_quitting_mid_sweep_and_running_again_continues_the_same_study(longer_root, sqlite_url):
    args = _run_args(longer_root, sqlite_url, "--optimizers", "sgd", "--trials", "4",
                     "--epochs", "2", "--seeds", "0")  # fmt: skip
    first = start_sweep_cli(*args)
    for line in first.stdout:
        if re.match(r"^sgd trial 1 start", line):
            first.send_signal(signal.SIGINT)  # as Ctrl-C: stop after this batch
            break
    out, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    assert "stopping after the current batch" in err
    assert re.search(r"^sgd trial 1 stopped: stopped by the user", out, re.M)

    again = sweep_cli(*args)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("continuing sweep 'sweep' (1/4 trials done)")
    assert "sgd trial 4 start" in again.stdout
    assert "(rerun of trial 1)" in again.stdout
    assert "sgd trial 0 start" not in again.stdout  # nothing done is done again
    assert re.search(r"^sgd +4/4 ", again.stdout, re.M)
