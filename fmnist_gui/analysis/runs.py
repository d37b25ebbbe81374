"""The session's run list: every training run and race member, with its config and metrics.

No Qt here. A ``RunList`` holds ``Run`` records (name, config, per-epoch
metrics, batch losses, shown/hidden); views subscribe to changes. It exports
the metrics of the shown runs to CSV (one row per epoch per run, with the
config columns) and turns into plain lists and dicts (``to_state``) that a
checkpoint can store and ``torch.load(weights_only=True)`` can read back.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from fmnist_gui.errors import FmnistError
from fmnist_gui.system.fileio import write_atomically
from fmnist_gui.training.config import ABSENT_MEANS_DEFAULT, TrainConfig
from fmnist_gui.training.events import EPOCH_FIELDS

RunSource = Literal["training", "race"]
ChangeKind = Literal["added", "changed", "removed"]
Listener = Callable[[ChangeKind, "Run"], None]

# Every number of an EpochEnd but its index, in the same order.
METRIC_COLUMNS = tuple(name for name in EPOCH_FIELDS if name != "epoch")
CONFIG_COLUMNS = (
    "optimizer",
    "optimizer_params",
    "lr",
    "batch_size",
    "epochs",
    "loss",
    "loss_params",
    "scheduler",
    "scheduler_params",
    "seed",
    "shuffle",
    "device",
)
FULL_TRAIN_SIZE = 60_000  # Fashion-MNIST's training images
CSV_COLUMNS = ("run_id", "run_name", "source", "status", "epoch", *METRIC_COLUMNS, *CONFIG_COLUMNS)


class RunError(FmnistError, ValueError):
    """A run-list request that cannot be done (unknown run, empty name); the message says why."""


@dataclass
class Run:
    """One run as the session remembers it."""

    id: int
    name: str
    config: dict[str, Any]  # TrainConfig.to_dict()
    source: RunSource = "training"
    visible: bool = True
    status: str = "running"
    epochs: list[dict[str, float]] = field(default_factory=list)  # EpochEnd.as_dict()
    batch_losses: list[float] = field(default_factory=list)
    steps_per_epoch: int = 0  # batches in one epoch; 0 when not known
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)  # the same in every session

    def epoch_length(self) -> int:
        """Batches per epoch: as recorded, else as the finished epochs or the settings imply."""
        if self.steps_per_epoch > 0:
            return self.steps_per_epoch
        if self.epochs and self.batch_losses:
            return max(len(self.batch_losses) // len(self.epochs), 1)
        return max(math.ceil(FULL_TRAIN_SIZE / int(self.config.get("batch_size") or 64)), 1)

    def to_state(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "config": dict(self.config),
            "source": self.source,
            "visible": self.visible,
            "status": self.status,
            "epochs": [dict(e) for e in self.epochs],
            "batch_losses": list(self.batch_losses),
            "steps_per_epoch": self.steps_per_epoch,
            "uid": self.uid,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Run:
        return cls(
            id=int(state["id"]),
            name=str(state["name"]),
            config=dict(state["config"]),
            source=state.get("source", "training"),
            visible=bool(state.get("visible", True)),
            status=str(state.get("status", "finished")),
            epochs=[dict(e) for e in state.get("epochs", [])],
            batch_losses=[float(v) for v in state.get("batch_losses", [])],
            steps_per_epoch=int(state.get("steps_per_epoch", 0)),
            uid=str(state.get("uid") or uuid.uuid4().hex),
        )


class RunList:
    """An ordered list of runs with stable ids; listeners hear of every change."""

    def __init__(self) -> None:
        self._runs: dict[int, Run] = {}
        self._next_id = 1
        self._listeners: list[Listener] = []
        self.replacing = False  # True while load_state swaps the whole list

    # ----- reading ------------------------------------------------------------------
    def __iter__(self) -> Iterator[Run]:
        return iter(list(self._runs.values()))

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, run_id: int) -> Run:
        try:
            return self._runs[run_id]
        except KeyError:
            raise RunError(f"there is no run with id {run_id}; it may have been removed") from None

    def visible(self) -> list[Run]:
        return [r for r in self._runs.values() if r.visible]

    # ----- changing -----------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(kind, run)`` after each add/change/remove."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def add(
        self,
        name: str,
        config: TrainConfig | Mapping[str, Any],
        source: RunSource = "training",
        steps_per_epoch: int = 0,
    ) -> Run:
        """Add a run; the name is made unique so legends and CSV rows never clash."""
        config_dict = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
        run = Run(self._next_id, self._unique_name(name.strip() or "run"), config_dict, source)
        run.steps_per_epoch = int(steps_per_epoch)
        self._next_id += 1
        self._runs[run.id] = run
        self._notify("added", run)
        return run

    def rename(self, run_id: int, name: str) -> Run:
        run = self.get(run_id)
        name = name.strip()
        if not name:
            raise RunError("a run name cannot be empty; type at least one character")
        if name != run.name:
            run.name = self._unique_name(name, exclude=run_id)
            self._notify("changed", run)
        return run

    def remove(self, run_id: int) -> Run:
        run = self._runs.pop(run_id, None)
        if run is None:
            raise RunError(f"there is no run with id {run_id}; it may have been removed")
        self._notify("removed", run)
        return run

    def set_visible(self, run_id: int, visible: bool) -> Run:
        run = self.get(run_id)
        if run.visible != visible:
            run.visible = visible
            self._notify("changed", run)
        return run

    def record(
        self,
        run_id: int,
        *,
        epoch: Mapping[str, float] | None = None,
        batch_losses: Iterable[float] = (),
        status: str | None = None,
    ) -> Run:
        """Append what a run produced since the last call (the views call it from their timer)."""
        run = self.get(run_id)
        run.batch_losses.extend(float(v) for v in batch_losses)
        if epoch is not None:
            run.epochs.append({k: float(epoch[k]) for k in EPOCH_FIELDS})
        if status is not None:
            run.status = status
        self._notify("changed", run)
        return run

    def update_config(self, run_id: int, config: TrainConfig | Mapping[str, Any]) -> Run:
        """Replace a run's settings with the ones it really runs with (new total, drawn seed)."""
        run = self.get(run_id)
        config_dict = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
        if config_dict != run.config:
            run.config = config_dict
            self._notify("changed", run)
        return run

    def clear(self) -> None:
        for run_id in list(self._runs):
            self.remove(run_id)

    def _unique_name(self, name: str, exclude: int | None = None) -> str:
        taken = {r.name for r in self._runs.values() if r.id != exclude}
        candidate, n = name, 2
        while candidate in taken:
            candidate, n = f"{name} ({n})", n + 1
        return candidate

    def _notify(self, kind: ChangeKind, run: Run) -> None:
        for listener in list(self._listeners):
            listener(kind, run)

    # ----- persistence and export --------------------------------------------------------
    def to_state(self) -> list[dict[str, Any]]:
        """Plain lists/dicts/str/float only: safe inside a ``weights_only`` checkpoint."""
        return [r.to_state() for r in self._runs.values()]

    def load_state(self, state: Iterable[Mapping[str, Any]]) -> None:
        """Replace the list with runs saved by ``to_state``.

        All are parsed first, so bad state changes nothing.
        """
        runs = [Run.from_state(s) for s in state]
        self.replacing = True
        try:
            self.clear()
        finally:
            self.replacing = False
        for run in runs:
            self._runs[run.id] = run
            self._next_id = max(self._next_id, run.id + 1)
            self._notify("added", run)

    def add_past(self, runs: Iterable[Run]) -> None:
        """Append runs of earlier sessions (e.g. from a ``RunStore``) under new ids."""
        for run in runs:
            run.id = self._next_id
            run.name = self._unique_name(run.name)
            self._next_id += 1
            self._runs[run.id] = run
            self._notify("added", run)

    def csv_text(self, runs: Iterable[Run] | None = None) -> str:
        """CSV of ``runs`` (default: the shown ones): one row per epoch per run."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for run in self.visible() if runs is None else runs:
            config = [_csv_value(_config_value(run.config, key)) for key in CONFIG_COLUMNS]
            for epoch in run.epochs:
                metrics = [repr(float(epoch[key])) for key in METRIC_COLUMNS]
                writer.writerow(
                    [
                        run.id,
                        run.name,
                        run.source,
                        run.status,
                        int(epoch["epoch"]),
                        *metrics,
                        *config,
                    ]
                )
        return out.getvalue()

    def export_csv(self, path: Path, runs: Iterable[Run] | None = None) -> int:
        """Write ``csv_text`` atomically to ``path``; return the number of data rows."""
        text = self.csv_text(runs)
        write_atomically(Path(path), lambda f: f.write(text.encode("utf-8")))
        return text.count("\n") - 1


class RunStore:
    """The run list on disk, so runs survive a restart: one SQLite row per run.

    A row keeps the run's name, settings, status and per-epoch metrics (not its
    batch losses, which can be long and live in checkpoints). ``follow(runs)``
    writes every change the list reports; a run removed by the user is deleted,
    one that leaves the list because an opened checkpoint replaced it is kept.
    """

    SCHEMA = """
        CREATE TABLE IF NOT EXISTS runs (
            uid TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            source TEXT NOT NULL,
            status TEXT NOT NULL,
            visible INTEGER NOT NULL,
            config TEXT NOT NULL,
            epochs TEXT NOT NULL,
            steps_per_epoch INTEGER NOT NULL,
            created REAL NOT NULL DEFAULT (julianday('now'))
        )
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            with self._db:
                self._db.execute(self.SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise RunError(
                f"cannot open the run history {self.path}: {exc}; "
                "check the folder is writable, or move the file away to start afresh"
            ) from exc
        self._written: dict[str, tuple] = {}

    def close(self) -> None:
        self._db.close()

    def load(self) -> list[Run]:
        """Every stored run, oldest first; a run that was running when the app ended is
        marked "interrupted"."""
        rows = self._db.execute(
            "SELECT uid, name, source, status, visible, config, epochs, steps_per_epoch "
            "FROM runs ORDER BY created, rowid"
        ).fetchall()
        runs = []
        for uid, name, source, status, visible, config, epochs, steps in rows:
            try:
                run = Run(
                    id=0,
                    name=name,
                    config=json.loads(config),
                    source=source,
                    visible=bool(visible),
                    status="interrupted" if status == "running" else status,
                    epochs=[dict(e) for e in json.loads(epochs)],
                    steps_per_epoch=int(steps),
                    uid=uid,
                )
            except (ValueError, TypeError):
                continue  # one unreadable row must not hide the others
            self._written[uid] = self._signature(run)
            runs.append(run)
        return runs

    def save(self, run: Run) -> None:
        """Insert or update ``run``'s row (skipped when nothing stored has changed)."""
        signature = self._signature(run)
        if self._written.get(run.uid) == signature:
            return
        with self._db:
            self._db.execute(
                "INSERT INTO runs (uid, name, source, status, visible, config, epochs, "
                "steps_per_epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(uid) DO UPDATE SET name=excluded.name, status=excluded.status, "
                "visible=excluded.visible, config=excluded.config, epochs=excluded.epochs, "
                "steps_per_epoch=excluded.steps_per_epoch",
                (
                    run.uid,
                    run.name,
                    run.source,
                    run.status,
                    int(run.visible),
                    json.dumps(run.config, sort_keys=True),
                    json.dumps(run.epochs),
                    run.steps_per_epoch,
                ),
            )
        self._written[run.uid] = signature

    def delete(self, uid: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM runs WHERE uid = ?", (uid,))
        self._written.pop(uid, None)

    def follow(self, runs: RunList) -> None:
        """Add the stored runs to ``runs`` (those not in it yet), then keep the file up to date."""
        present = {run.uid for run in runs}
        runs.add_past(run for run in self.load() if run.uid not in present)

        def listener(kind: ChangeKind, run: Run) -> None:
            if kind == "removed":
                if not runs.replacing:
                    self.delete(run.uid)
            else:
                self.save(run)

        for run in runs:
            self.save(run)
        runs.subscribe(listener)

    @staticmethod
    def _signature(run: Run) -> tuple:
        return (
            run.name,
            run.status,
            run.visible,
            json.dumps(run.config, sort_keys=True),
            len(run.epochs),
            run.steps_per_epoch,
        )


def _config_value(config: Mapping[str, Any], key: str) -> Any:
    # A run recorded before a setting existed ran with its default (e.g. the
    # constant schedule); other missing settings stay empty.
    if key in config:
        return config[key]
    return _ABSENT_DEFAULTS.get(key, "")


_ABSENT_DEFAULTS = {
    f.name: getattr(TrainConfig(), f.name)
    for f in fields(TrainConfig)
    if f.metadata.get(ABSENT_MEANS_DEFAULT)
}


def _csv_value(value: Any) -> str:
    # Dicts (optimizer_params) as JSON so one cell round-trips; None as empty.
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True)
    if value is None:
        return ""
    return str(value)


__all__ = [
    "CONFIG_COLUMNS",
    "CSV_COLUMNS",
    "METRIC_COLUMNS",
    "Run",
    "RunError",
    "RunList",
    "RunStore",
]
