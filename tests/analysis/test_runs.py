"""The run list: naming, visibility, persistence, CSV export."""

from __future__ import annotations

import csv
import io

import pytest

from fmnist_gui.analysis.runs import CONFIG_COLUMNS, CSV_COLUMNS, METRIC_COLUMNS, RunError, RunList
from fmnist_gui.training.config import TrainConfig


def _epoch(n: int, acc: float) -> dict[str, float]:
    return {
        "epoch": n,
        "train_loss": 1.0 / n,
        "test_loss": 1.5 / n,
        "test_accuracy": acc,
        "train_seconds": 2.0,
        "test_seconds": 0.5,
        "samples_per_second": 30000.0,
    }


def _two_runs() -> RunList:
    runs = RunList()
    a = runs.add("SGD lr=0.001", TrainConfig(epochs=2, optimizer="sgd", seed=1), "race")
    b = runs.add(
        "Adam lr=0.001",
        TrainConfig(epochs=3, optimizer="adam", optimizer_params={"betas": (0.8, 0.9)}),
        "race",
    )
    for n in (1, 2):
        runs.record(a.id, epoch=_epoch(n, 0.5 + n / 10), batch_losses=[2.0, 1.9])
    for n in (1, 2, 3):
        runs.record(b.id, epoch=_epoch(n, 0.6 + n / 10), status="finished" if n == 3 else None)
    return runs


def test_csv_has_one_row_per_epoch_per_shown_run(tmp_path):
    runs = _two_runs()
    path = tmp_path / "metrics.csv"
    assert runs.export_csv(path) == 5
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert set(METRIC_COLUMNS) <= set(CSV_COLUMNS)
    assert set(CONFIG_COLUMNS) <= set(CSV_COLUMNS)
    assert [(r["run_name"], r["epoch"]) for r in rows] == [
        ("SGD lr=0.001", "1"),
        ("SGD lr=0.001", "2"),
        ("Adam lr=0.001", "1"),
        ("Adam lr=0.001", "2"),
        ("Adam lr=0.001", "3"),
    ]
    assert rows[0]["optimizer"] == "sgd"
    assert rows[0]["seed"] == "1"
    assert rows[0]["lr"] == "0.001"
    assert rows[2]["optimizer_params"] == '{"betas": [0.8, 0.9]}'
    assert rows[0]["scheduler"] == "constant"
    assert rows[0]["scheduler_params"] == "{}"
    assert float(rows[4]["test_accuracy"]) == pytest.approx(0.9)

    runs.set_visible(runs.visible()[0].id, False)
    assert runs.export_csv(path) == 3  # hidden runs are not exported


def test_rename_remove_and_listeners():
    runs = _two_runs()
    heard = []
    runs.subscribe(lambda kind, run: heard.append((kind, run.name)))
    first, second = list(runs)
    runs.rename(first.id, "  baseline ")
    assert first.name == "baseline"
    runs.rename(second.id, "baseline")  # clash: made unique, not refused
    assert second.name == "baseline (2)"
    with pytest.raises(RunError, match="empty"):
        runs.rename(first.id, "   ")
    runs.remove(first.id)
    assert [r.name for r in runs] == ["baseline (2)"]
    with pytest.raises(RunError, match="no run with id"):
        runs.get(first.id)
    assert heard == [("changed", "baseline"), ("changed", "baseline (2)"), ("removed", "baseline")]


def test_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    import torch

    runs = _two_runs()
    path = tmp_path / "runs.pt"
    torch.save({"runs": runs.to_state()}, path)
    restored = RunList()
    restored.load_state(torch.load(path, weights_only=True)["runs"])
    assert restored.csv_text() == runs.csv_text()
    added = restored.add("new", TrainConfig())
    assert added.id == max(r.id for r in runs) + 1  # ids stay unique after a restore


def test_runs_survive_a_restart_in_the_store(tmp_path):
    from fmnist_gui.analysis.runs import RunStore

    path = tmp_path / "home" / "runs.sqlite"
    runs = _two_runs()
    store = RunStore(path)
    store.follow(runs)
    first, second = list(runs)
    runs.rename(first.id, "my sgd")
    running = runs.add("still running", TrainConfig(epochs=5, seed=9), "training")
    runs.record(running.id, epoch=_epoch(1, 0.7))
    store.close()

    # The next session: a fresh list fed from the same file.
    again = RunList()
    store = RunStore(path)
    store.follow(again)
    restored = {r.name: r for r in again}
    assert list(restored) == ["my sgd", "Adam lr=0.001", "still running"]
    adam = restored["Adam lr=0.001"]
    assert adam.config == second.config  # every setting, params included
    assert adam.epochs == second.epochs
    assert adam.status == "finished"
    assert restored["still running"].status == "interrupted"
    assert restored["still running"].config["seed"] == 9
    # Removing a run forgets it; a checkpoint's list replacing the session's does not.
    again.remove(restored["my sgd"].id)
    again.load_state([])
    store.close()
    third = RunList()
    RunStore(path).follow(third)
    assert [r.name for r in third] == ["Adam lr=0.001", "still running"]


def test_an_unwritable_store_is_explained(tmp_path):
    from fmnist_gui.analysis.runs import RunStore

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RunError, match="run history"):
        RunStore(blocker / "runs.sqlite")


def test_csv_names_each_runs_schedule_and_an_old_runs_constant_one(tmp_path):
    runs = RunList()
    cosine = runs.add(
        "cosine",
        TrainConfig(epochs=1, scheduler="cosine", scheduler_params={"eta_min": 1e-4}),
        "training",
    )
    old = runs.add("old", TrainConfig(epochs=1), "training")
    # Recorded before schedules existed: its config has no schedule at all.
    old.config.pop("scheduler")
    old.config.pop("scheduler_params")
    for run in (cosine, old):
        runs.record(run.id, epoch=_epoch(1, 0.5))
    rows = list(csv.DictReader(io.StringIO(runs.csv_text())))
    assert [(r["run_name"], r["scheduler"], r["scheduler_params"]) for r in rows] == [
        ("cosine", "cosine", '{"eta_min": 0.0001}'),
        ("old", "constant", "{}"),
    ]
