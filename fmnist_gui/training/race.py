"""The optimizer race: several optimizer settings, one start line.

No Qt here. A ``Race`` builds one ``Trainer`` per entry, all from the *same*
initial weights (one reference ``NeuralNetwork`` made with the race's seed)
and with the same seed and shuffle setting, so every member's ``BatchLoader``
draws the same batches in the same order. The only difference between members
is then the optimizer and its settings: exactly what the race compares.

Members take turns one epoch at a time (round robin), so the curves grow side
by side, while each epoch runs without interruption and its timing (seconds,
samples/s) measures that member alone. Each member's trainer runs through its
own ``RunDriver``, so a stop from another thread lands at a batch boundary.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from fmnist_gui.errors import FmnistError
from fmnist_gui.plugins.host import PluginHost
from fmnist_gui.training.config import ConfigError, TrainConfig
from fmnist_gui.training.data import FashionMNISTData
from fmnist_gui.training.driver import RunDriver
from fmnist_gui.training.events import EpochEnd, Event, RunEnd, RunStatus
from fmnist_gui.training.model import NeuralNetwork
from fmnist_gui.training.trainer import Trainer, new_seed

# The tutorial's optimizer and the two it names as alternatives, by plugin name
# (never by class: whichever plugin registers these names provides them).
DEFAULT_OPTIMIZERS = ("sgd", "adam", "rmsprop")
DEFAULT_LR = 1e-3
DEFAULT_EPOCHS = 2


@dataclass(frozen=True)
class RaceEntry:
    """One competitor: an optimizer (by plugin name), its settings and a learning rate."""

    optimizer: str
    optimizer_params: Mapping[str, Any] = field(default_factory=dict)
    lr: float = DEFAULT_LR
    name: str = ""  # empty: derived from the optimizer's label and settings


def default_entries(
    plugins: PluginHost,
    names: Sequence[str] = DEFAULT_OPTIMIZERS,
    lr: float = DEFAULT_LR,
) -> tuple[list[RaceEntry], list[str]]:
    """The tutorial's three optimizers at ``lr``, those that are installed.

    Returns ``(entries, notes)``: a note for each name no loaded plugin
    provides, so the user learns why it is missing instead of seeing an error.
    """
    entries, notes = [], []
    for name in names:
        if name in plugins.optimizers:
            entries.append(RaceEntry(name, {}, lr))
        else:
            notes.append(
                f"optimizer {name!r} is not installed (no loaded plugin registers it); "
                "it was left out of the race"
            )
    return entries, notes


def describe_entry(entry: RaceEntry, plugins: PluginHost) -> str:
    """A short legend label: the optimizer's label, settings that differ from defaults, lr."""
    if entry.name:
        return entry.name
    try:
        spec = plugins.optimizer(entry.optimizer)
        resolved = spec.resolve(entry.optimizer_params)
    except FmnistError:
        # The Trainer reports the actual problem; the label only has to exist.
        return f"{entry.optimizer} lr={entry.lr:g}"
    parts = [spec.label]
    for param in spec.params:
        if resolved[param.name] != param.default:
            parts.append(f"{param.name}={param.format(resolved[param.name])}")
    parts.append(f"lr={entry.lr:g}")
    return " ".join(parts)


@dataclass(frozen=True)
class RaceEvent:
    """An engine event from member ``member`` (index into ``Race.members``)."""

    member: int
    event: Event


@dataclass
class Member:
    """One competitor while and after it races."""

    name: str
    entry: RaceEntry
    trainer: Trainer
    status: RunStatus | None = None  # None while it still has epochs to go
    message: str = ""
    driver: RunDriver = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.driver = RunDriver(self.trainer)

    @property
    def config(self) -> TrainConfig:
        return self.trainer.config


@dataclass(frozen=True)
class MemberResult:
    """A row of the results table."""

    name: str
    optimizer: str
    lr: float
    status: str
    epochs_done: int
    test_accuracy: float | None  # fraction, after the last finished epoch
    test_loss: float | None
    seconds: float  # training plus evaluation, all finished epochs
    samples_per_second: float  # training samples over training seconds


class Race:
    """Train several optimizer settings from identical weights on identical batches.

    ``base`` supplies everything the members share (epochs, batch size, loss,
    seed, shuffle, device); each entry overrides optimizer, its params and lr.
    Construction builds every trainer, so a bad entry raises ``ConfigError``
    naming the entry before any training starts.
    """

    def __init__(
        self,
        entries: Sequence[RaceEntry],
        data: FashionMNISTData,
        plugins: PluginHost,
        base: TrainConfig | None = None,
    ) -> None:
        if not entries:
            raise ConfigError("a race needs at least one optimizer; add one to the list")
        base = base if base is not None else TrainConfig(epochs=DEFAULT_EPOCHS)
        base.validate()
        self.seed = base.seed if base.seed is not None else new_seed()
        # One reference network, made exactly as a Trainer with this seed would
        # make it; every member loads a copy, so their weights start identical
        # whatever a plugin's factory does to the global RNG.
        torch.manual_seed(self.seed)
        self.initial_state = {
            k: v.detach().clone() for k, v in NeuralNetwork().state_dict().items()
        }
        self.members: list[Member] = []
        names: set[str] = set()
        for number, entry in enumerate(entries, start=1):
            name = describe_entry(entry, plugins)
            if name in names:  # two identical entries still need two legend labels
                name = f"{name} #{number}"
            names.add(name)
            config = replace(
                base,
                optimizer=entry.optimizer,
                lr=entry.lr,
                seed=self.seed,
                optimizer_params=dict(entry.optimizer_params),
            )
            try:
                trainer = Trainer(config, data, plugins, initial_state=self.initial_state)
            except FmnistError as exc:
                raise ConfigError(f"race entry {number} ({name}): {exc}") from exc
            self.members.append(Member(name, entry, trainer))
        # Set from any thread; a plain bool store is atomic.
        self._stop_requested = False

    # ----- control (any thread) ------------------------------------------------
    def request_stop(self) -> None:
        """Stop at the next batch boundary; members not yet run to the end count as stopped."""
        self._stop_requested = True
        for member in self.members:  # the one training now stops at its next batch
            member.driver.request_stop()

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    # ----- the race ---------------------------------------------------------------
    def run(self) -> Iterator[RaceEvent]:
        """Round robin, one epoch per member per turn; ends with every member's ``RunEnd``."""
        runs = {i: m.driver.run() for i, m in enumerate(self.members) if m.status is None}
        while runs and not self._stop_requested:
            for i in list(runs):
                if self._stop_requested:
                    break
                yield from self._one_epoch(i, runs)
        for i, run in runs.items():  # left behind by a stop
            run.close()
            member = self.members[i]
            member.status, member.message = "stopped", "the race was stopped"
            yield RaceEvent(i, RunEnd("stopped", member.message))

    def _one_epoch(
        self, i: int, runs: dict[int, Generator[Event, None, None]]
    ) -> Iterator[RaceEvent]:
        member = self.members[i]
        for event in runs[i]:
            yield RaceEvent(i, event)
            if isinstance(event, EpochEnd):
                return
            if isinstance(event, RunEnd):
                member.status, member.message = event.status, event.message
                del runs[i]
                return

    # ----- results -------------------------------------------------------------------
    def results(self) -> list[MemberResult]:
        rows = []
        for member in self.members:
            epochs = member.trainer.history.epochs
            train_seconds = sum(e.train_seconds for e in epochs)
            samples = member.trainer.train_loader.dataset_size * len(epochs)
            last = epochs[-1] if epochs else None
            rows.append(
                MemberResult(
                    name=member.name,
                    optimizer=member.entry.optimizer,
                    lr=member.entry.lr,
                    status=member.status or "waiting",
                    epochs_done=len(epochs),
                    test_accuracy=last.test_accuracy if last else None,
                    test_loss=last.test_loss if last else None,
                    seconds=sum(e.train_seconds + e.test_seconds for e in epochs),
                    samples_per_second=samples / train_seconds if train_seconds else 0.0,
                )
            )
        return rows


__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_LR",
    "DEFAULT_OPTIMIZERS",
    "Member",
    "MemberResult",
    "Race",
    "RaceEntry",
    "RaceEvent",
    "default_entries",
    "describe_entry",
]
