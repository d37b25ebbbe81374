"""The training engine: the tutorial's loop, resumable at any batch.

No Qt and no threads here. ``Trainer.run()`` is a generator of events
(``fmnist_gui.training.events``) that suspends at every batch boundary; the
loop itself is ``fmnist_gui.training.loop``. Whoever iterates ``run()`` owns
the run's control: it stops by no longer asking for the next event, pauses by
waiting between two events, and snapshots by calling ``state_dict()`` there.
``RunDriver`` (``fmnist_gui.training.driver``) does all three on behalf of
other threads.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Generator, Iterator
from typing import Any, cast

import torch

from fmnist_gui.errors import FmnistError
from fmnist_gui.plugins.boundary import PluginFailure, blame, describe, from_plugin
from fmnist_gui.plugins.host import PluginHost
from fmnist_gui.training.config import ConfigError, TrainConfig
from fmnist_gui.training.data import BatchLoader, FashionMNISTData
from fmnist_gui.training.events import (
    EPOCH_FIELDS,
    BatchEnd,
    EpochEnd,
    EpochStart,
    Event,
    History,
    RunEnd,
)
from fmnist_gui.training.loop import DivergedError, evaluate, train_one_epoch
from fmnist_gui.training.model import NeuralNetwork
from fmnist_gui.training.schedule import (
    Change,
    apply_values,
    build_scheduler,
    check_values,
    group_by_step,
)
from fmnist_gui.training.sentinel import DivergenceError, Sentinel
from fmnist_gui.training.state import TrainingState


class IncompatibleState(FmnistError, ValueError):  # noqa: N818 - established public name
    """A saved training state that does not fit this app, its plugins or this data."""


def resolve_device(name: str) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if name == "cuda":
            raise ConfigError(
                "device cuda was asked for, but CUDA is not available here; "
                "use --device cpu or auto"
            )
        return torch.device("cpu")
    raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda")


def new_seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


class Stopwatch:
    """Seconds added up over the stretches between ``start()`` and ``stop()``."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.total = seconds  # the finished stretches
        self._since: float | None = None  # perf_counter() when the running stretch began

    @property
    def running(self) -> bool:
        return self._since is not None

    def start(self) -> None:
        self._since = time.perf_counter()

    def stop(self) -> None:
        if self._since is not None:
            self.total += time.perf_counter() - self._since
            self._since = None

    @property
    def seconds(self) -> float:
        """The total so far, the running stretch included."""
        if self._since is None:
            return self.total
        return self.total + time.perf_counter() - self._since

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the time spent inside this block out of the total (e.g. a pause)."""
        was_running = self.running
        self.stop()
        try:
            yield
        finally:
            if was_running:
                self.start()


class Trainer:
    """One model being trained under one ``TrainConfig``.

    Construction validates everything (config, plugin names, hyperparameters)
    and raises an ``FmnistError`` (``ConfigError``, ``ParamError``,
    ``UnknownPluginError``, ``PluginFailure``) with a readable message before
    any training starts.
    """

    def __init__(
        self,
        config: TrainConfig,
        data: FashionMNISTData,
        plugins: PluginHost,
        *,
        initial_state: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.config = config.validate()
        self.device = resolve_device(config.device)
        self.optimizer_spec = plugins.optimizer(config.optimizer)
        self.loss_spec = plugins.loss(config.loss)
        self.optimizer_params = self.optimizer_spec.resolve(config.optimizer_params)
        self.loss_params = self.loss_spec.resolve(config.loss_params)
        self.scheduler_spec = plugins.scheduler(config.scheduler)
        self.scheduler_params = self.scheduler_spec.resolve(config.scheduler_params)
        # Saved in checkpoints, so a load can say which plugin version wrote it.
        self.plugin_versions = {
            name: plugins.records[name].version
            for name in (
                self.optimizer_spec.plugin,
                self.loss_spec.plugin,
                self.scheduler_spec.plugin,
            )
            if name in plugins.records
        }

        # The seed goes first, as `torch.manual_seed(S)` as the first line of
        # the tutorial's script: the weights then come out identical to it.
        self.seed = config.seed if config.seed is not None else new_seed()
        torch.manual_seed(self.seed)
        self.model = NeuralNetwork().to(self.device)
        if initial_state is not None:
            self.model.load_state_dict(initial_state)
        self.optimizer = self._build_optimizer()
        self.loss_fn = self._build_loss()

        self.shuffle_generator = torch.Generator().manual_seed(self.seed)
        self.train_loader = BatchLoader(
            data.train,
            config.batch_size,
            shuffle=config.shuffle,
            generator=self.shuffle_generator,
            device=self.device,
        )
        self.test_loader = BatchLoader(data.test, config.batch_size, device=self.device)
        # Stepped once per batch; it counts the run's batches from the config's epochs.
        self.scheduler = build_scheduler(
            self.scheduler_spec,
            self.scheduler_params,
            self.optimizer,
            total_steps=config.epochs * len(self.train_loader),
            steps_per_epoch=len(self.train_loader),
        )
        # Changes to replay: global_step -> {name: value}, applied at that boundary.
        self._planned: dict[int, dict[str, Any]] = {}

        # Position: `epochs_done` full epochs, then `batch_in_epoch` batches of the next.
        self.epochs_done = 0
        self.batch_in_epoch = 0
        self.global_step = 0
        # Generator state at the start of the current epoch, before its
        # permutation was drawn: replaying it gives the same order on resume.
        self.epoch_generator_state: torch.Tensor = self.shuffle_generator.get_state()
        self.epoch_loss_sum = 0.0
        # Runs while the epoch's batches are trained; whoever pauses between two
        # events wraps the wait in ``epoch_clock.paused()``.
        self.epoch_clock = Stopwatch()
        self.history = History()
        # Why this model diverged (None while it has not): such a model does not
        # train on until ``sentinel.roll_back()`` (or a new model).
        self.diverged: str | None = None
        self.sentinel = Sentinel(self)

    # ----- building from plugins ------------------------------------------------
    def _build_optimizer(self) -> torch.optim.Optimizer:
        spec = self.optimizer_spec
        try:
            optimizer = spec.factory(
                self.model.parameters(), lr=self.config.lr, **self.optimizer_params
            )
        except (ValueError, TypeError) as exc:
            raise PluginFailure(
                spec.plugin,
                f"optimizer {spec.name!r} (plugin {spec.plugin!r}) refused its settings: {exc}",
            ) from exc
        except BaseException as exc:  # sys.exit() in a factory too; not a real Ctrl-C
            if not from_plugin(exc):
                raise
            raise PluginFailure(
                spec.plugin,
                f"optimizer {spec.name!r} (plugin {spec.plugin!r}) failed to build: {_reason(exc)}",
            ) from exc
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise PluginFailure(
                spec.plugin,
                f"optimizer {spec.name!r} (plugin {spec.plugin!r}) returned "
                f"{type(optimizer).__name__}, not a torch.optim.Optimizer",
            )
        return optimizer

    def _build_loss(self):
        spec = self.loss_spec
        try:
            loss_fn = spec.factory(**self.loss_params)
        except BaseException as exc:  # sys.exit() in a factory too; not a real Ctrl-C
            if not from_plugin(exc):
                raise
            raise PluginFailure(
                spec.plugin,
                f"loss {spec.name!r} (plugin {spec.plugin!r}) failed to build: {_reason(exc)}",
            ) from exc
        if not callable(loss_fn):
            raise PluginFailure(
                spec.plugin,
                f"loss {spec.name!r} (plugin {spec.plugin!r}) "
                f"returned {type(loss_fn).__name__}, not a callable",
            )
        if isinstance(loss_fn, torch.nn.Module):
            loss_fn = loss_fn.to(self.device)
        return loss_fn

    # ----- live changes -----------------------------------------------------------
    def check_change(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` checked (``ParamError`` names what may change); nothing is applied."""
        return check_values(self.optimizer_spec, values)

    def apply_change(self, values: dict[str, Any]) -> list[Change]:
        """Edit the optimizer's param groups now (take it at a batch boundary) and record it.

        The optimizer's state is kept. Returns the recorded changes, each at
        ``global_step``: the number of batches trained before it.
        """
        checked = self.check_change(values)
        apply_values(self.optimizer, checked)
        recorded = [
            Change(
                step=self.global_step,
                name=name,
                value=list(value) if isinstance(value, tuple) else value,
            )
            for name, value in checked.items()
        ]
        self.history.changes.extend(dict(c) for c in recorded)
        return recorded

    def plan_changes(self, changes: list[Change]) -> None:
        """Replay ``changes`` (e.g. a change file) as the run reaches their steps.

        Every value is checked now. Changes before the current step, and those
        already in the history (a resumed run has them in its weights), are skipped.
        """
        done = {(c["step"], c["name"]) for c in self.history.changes}
        todo = [
            c
            for c in changes
            if c["step"] >= self.global_step and (c["step"], c["name"]) not in done
        ]
        for step, values in group_by_step(todo).items():
            self._planned.setdefault(step, {}).update(self.check_change(values))

    def _apply_planned(self) -> None:
        if self._planned:  # cheap look first: this runs once per batch
            values = self._planned.pop(self.global_step, None)
            if values:
                self.apply_change(values)

    # ----- the run ----------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.epochs_done >= self.config.epochs

    @property
    def epoch_train_seconds(self) -> float:
        """Training seconds of the current epoch so far (its test pass not included)."""
        return self.epoch_clock.seconds

    def run(self) -> Generator[Event, None, None]:
        """Train until ``config.epochs`` epochs are done; the last event is a ``RunEnd``.

        Between two events the trainer is at a batch boundary: the caller may
        take a ``state_dict()`` there, wait (inside ``epoch_clock.paused()``, so
        the pause is not training time), or stop iterating (closing the
        generator). Calling ``run()`` again after a stop (or after raising
        ``config.epochs``) continues exactly where the last call left off.
        A diverged model's run ends at once with ``RunEnd("diverged")`` until
        it is rolled back.
        """
        if self.diverged is not None:
            yield RunEnd("diverged", f"{self.diverged} {self._way_out()}")
            return
        try:
            if self.sentinel.snapshot is None:
                self.sentinel.take()  # the state this run starts from is the first good one
            while self.epochs_done < self.config.epochs:
                yield from self._train_epoch()
                yield self._finish_epoch()
        except (DivergedError, DivergenceError) as exc:
            where = (
                f"at epoch {self.epochs_done + 1}, batch {self.batch_in_epoch}"
                if self.batch_in_epoch < len(self.train_loader)
                else f"at the end of epoch {self.epochs_done + 1}"
            )
            self.diverged = f"Training diverged: {exc} {where} (step {self.global_step})."
            self.sentinel.events.append((self.global_step, f"diverged: {exc}"))
            end = RunEnd("diverged", f"{self.diverged} {self._way_out()}")
        except PluginFailure as exc:
            end = RunEnd("failed", str(exc))
        else:
            end = RunEnd("finished")
        yield end

    def _way_out(self) -> str:
        snap = self.sentinel.snapshot
        if snap is None:
            return "Reset and try a lower learning rate."
        return (
            f"Roll back to the last good state ({snap.where}), optionally with the "
            "learning rate halved, or Reset and try a lower learning rate."
        )

    def _train_epoch(self) -> Iterator[Event]:
        loader = self.train_loader
        epoch = self.epochs_done + 1
        # Always draw the order from the state saved at the epoch's start, so
        # an epoch interrupted anywhere (even before its first batch) replays
        # the same permutation when it is continued.
        self.shuffle_generator.set_state(self.epoch_generator_state)
        order = loader.epoch_order()
        yield EpochStart(epoch, len(loader), self.batch_in_epoch)

        losses = train_one_epoch(
            self.model,
            self.loss_fn,
            self.optimizer,
            loader.batches(order, start=self.batch_in_epoch),
            loss_spec=self.loss_spec,
            optimizer_spec=self.optimizer_spec,
        )
        sentinel = self.sentinel
        self.epoch_clock.start()
        try:
            self._apply_planned()
            for loss, batch_len in losses:
                # The lr this batch's step used: the schedule moves it for the next one.
                self.history.lrs.append(float(self.optimizer.param_groups[0]["lr"]))
                with blame(self.scheduler_spec, "scheduler", "step()"):
                    self.scheduler.step()
                self.batch_in_epoch += 1
                self.global_step += 1
                self.epoch_loss_sum += loss
                self.history.batch_losses.append(loss)
                sentinel.observe(loss)
                sentinel.batch_done()
                yield BatchEnd(
                    epoch,
                    self.batch_in_epoch - 1,
                    self.global_step,
                    loss,
                    batch_len,
                    loader.dataset_size,
                    len(loader),
                )
                # After the yield: a change a driver made at this boundary came first.
                self._apply_planned()
        finally:
            # Every way out (the end, a divergence, a failure, a stop) ends the stretch.
            self.epoch_clock.stop()
            losses.close()

    def _finish_epoch(self) -> EpochEnd:
        started = time.perf_counter()
        test_loss, accuracy = evaluate(
            self.model, self.loss_fn, self.test_loader, loss_spec=self.loss_spec
        )
        test_seconds = time.perf_counter() - started
        if not math.isfinite(test_loss):
            raise DivergenceError(f"the test loss became {test_loss}")
        self.sentinel.check()  # an epoch is only recorded (and saved) when its state is sound
        seconds = self.epoch_clock.seconds
        result = EpochEnd(
            epoch=self.epochs_done + 1,
            train_loss=self.epoch_loss_sum / max(self.batch_in_epoch, 1),
            test_loss=test_loss,
            test_accuracy=accuracy,
            train_seconds=seconds,
            test_seconds=test_seconds,
            samples_per_second=self.train_loader.dataset_size / seconds if seconds else 0.0,
        )
        self.history.epochs.append(result)
        self.epoch_generator_state = self.shuffle_generator.get_state()
        self.epochs_done += 1
        self.batch_in_epoch = 0
        self.epoch_loss_sum = 0.0
        self.epoch_clock = Stopwatch()
        self.sentinel.take()
        return result

    # ----- snapshots (the file format lives in fmnist_gui.checkpoint) ---------------
    def state_dict(self) -> TrainingState:
        """Everything needed to continue this training bit for bit, as plain data.

        Tensors are copied to the CPU, so training may go on meanwhile. Take it
        between two events of ``run()``: the generator is then suspended at a
        batch boundary.
        """
        cuda_rng = torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []
        state: TrainingState = {
            "model": self.model.state_dict(),
            "optimizer": {
                "name": self.optimizer_spec.name,
                "plugin": self.optimizer_spec.plugin,
                "params": _plain(self.optimizer_params),
                "state_dict": self._optimizer_state_dict(),
            },
            "loss": {
                "name": self.loss_spec.name,
                "plugin": self.loss_spec.plugin,
                "params": _plain(self.loss_params),
            },
            "scheduler": {
                "name": self.scheduler_spec.name,
                "plugin": self.scheduler_spec.plugin,
                "params": _plain(self.scheduler_params),
                "state_dict": self.scheduler.state_dict(),
            },
            "config": self.config.to_dict(),
            "position": {
                "epochs_done": self.epochs_done,
                "batch_in_epoch": self.batch_in_epoch,
                "global_step": self.global_step,
                "epoch_generator_state": self.epoch_generator_state,
                "epoch_loss_sum": float(self.epoch_loss_sum),
                "epoch_train_seconds": float(self.epoch_clock.seconds),
                "seed": self.seed,
            },
            "rng": {
                "torch_cpu": torch.get_rng_state(),
                "cuda": list(cuda_rng),
                "shuffle": self.shuffle_generator.get_state(),
            },
            "history": {
                "batch_losses": torch.tensor(self.history.batch_losses, dtype=torch.float64),
                "epochs": [e.as_dict() for e in self.history.epochs],
                "lrs": torch.tensor(self.history.lrs, dtype=torch.float64),
                "changes": [dict(c) for c in self.history.changes],
            },
            "data": {
                "train_size": self.train_loader.dataset_size,
                "test_size": self.test_loader.dataset_size,
            },
            "torch_threads": torch.get_num_threads(),
            "plugins": dict(self.plugin_versions),
        }
        return cast(TrainingState, _cpu_copy(state))

    def _optimizer_state_dict(self) -> dict[str, Any]:
        # A plugin's optimizer may override state_dict(): its code runs here.
        with blame(self.optimizer_spec, "optimizer", "state_dict()"):
            return self.optimizer.state_dict()

    @classmethod
    def from_state_dict(
        cls,
        state: TrainingState,
        data: FashionMNISTData,
        plugins: PluginHost,
        *,
        epochs: int | None = None,
    ) -> Trainer:
        """A new Trainer that continues exactly where ``state`` (``state_dict()``) left off.

        ``epochs`` replaces the saved total. Raises an ``FmnistError`` (a bad
        config, plugin or hyperparameter, or ``IncompatibleState``); on failure
        torch's global RNG is left as it was.
        The structure of ``state`` is assumed checked (``fmnist_gui.checkpoint``).
        """
        rng_before = torch.get_rng_state()
        try:
            return cls._from_state_dict(state, data, plugins, epochs)
        except BaseException:
            torch.set_rng_state(rng_before)  # __init__ reseeded it
            raise

    @classmethod
    def _from_state_dict(cls, state, data, plugins, epochs) -> Trainer:
        position = state["position"]
        config = TrainConfig.from_dict(dict(state["config"]))
        # The resolved names and hyperparameters, and the seed actually used
        # (the config's may be None, "pick one").
        config.optimizer = state["optimizer"]["name"]
        config.optimizer_params = dict(state["optimizer"]["params"])
        config.loss = state["loss"]["name"]
        config.loss_params = dict(state["loss"]["params"])
        config.seed = position["seed"]
        scheduler = state.get("scheduler")
        config.scheduler = scheduler["name"] if scheduler else "constant"
        config.scheduler_params = dict(scheduler["params"]) if scheduler else {}
        if epochs is not None:
            config.epochs = epochs

        sizes = (len(data.train), len(data.test))
        saved_sizes = (state["data"]["train_size"], state["data"]["test_size"])
        if sizes != saved_sizes:
            raise IncompatibleState(
                f"it was trained on {saved_sizes[0]} training and {saved_sizes[1]} test "
                f"images, but the data here has {sizes[0]} and {sizes[1]}"
            )
        trainer = cls(config, data, plugins)
        try:
            trainer.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise IncompatibleState(f"its weights do not fit this network: {exc}") from None
        misfit: Exception | None = None
        # A plugin's optimizer may override load_state_dict(): its code runs here.
        with blame(trainer.optimizer_spec, "optimizer", "load_state_dict()"):
            try:
                trainer.optimizer.load_state_dict(state["optimizer"]["state_dict"])
            except (ValueError, KeyError, TypeError, RuntimeError) as exc:
                misfit = exc
        if misfit is not None:
            raise IncompatibleState(
                f"its optimizer state does not fit optimizer {config.optimizer!r}: {misfit}"
            )

        if scheduler:
            try:
                trainer.scheduler.load_state_dict(scheduler["state_dict"])
            except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
                raise IncompatibleState(
                    f"its schedule state does not fit scheduler {config.scheduler!r}: {exc}"
                ) from None

        batch_in_epoch = position["batch_in_epoch"]
        if not 0 <= batch_in_epoch <= len(trainer.train_loader):
            raise IncompatibleState(
                f"its position (batch {batch_in_epoch}) is beyond the "
                f"{len(trainer.train_loader)} batches of an epoch"
            )
        trainer.epochs_done = position["epochs_done"]
        trainer.batch_in_epoch = batch_in_epoch
        trainer.global_step = position["global_step"]
        trainer.epoch_loss_sum = float(position["epoch_loss_sum"])
        trainer.epoch_clock = Stopwatch(float(position["epoch_train_seconds"]))
        rng = state["rng"]
        try:
            trainer.epoch_generator_state = position["epoch_generator_state"].clone()
            trainer.shuffle_generator.set_state(rng["shuffle"].clone())
            # Replaying the epoch's start state must be possible too.
            torch.Generator().set_state(trainer.epoch_generator_state)
            torch.set_rng_state(rng["torch_cpu"].clone())
        except (RuntimeError, TypeError) as exc:
            raise IncompatibleState(f"its random-generator state is damaged: {exc}") from None
        if trainer.device.type == "cuda" and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.clone() for s in rng["cuda"]])

        history = state["history"]
        trainer.history = History(
            batch_losses=history["batch_losses"].tolist(),
            epochs=[EpochEnd(**{k: e[k] for k in EPOCH_FIELDS}) for e in history["epochs"]],
            lrs=history["lrs"].tolist() if "lrs" in history else [],
            changes=[dict(c) for c in history.get("changes", [])],
        )
        # Matrix products may round differently with another thread count;
        # use the saved one where this machine has the cores for it.
        threads = state["torch_threads"]
        if threads != torch.get_num_threads() and 1 <= threads <= (os.cpu_count() or 1):
            torch.set_num_threads(threads)
        return trainer


def _reason(exc: BaseException) -> str:
    # An ordinary exception reads as before; an exit or interrupt says what it was.
    return str(exc) if isinstance(exc, Exception) else describe(exc)


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameters as weights_only-friendly values (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def _cpu_copy(value: Any) -> Any:
    """A deep copy with every tensor detached and cloned onto the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _cpu_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cpu_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_cpu_copy(v) for v in value)
    return value


__all__ = ["IncompatibleState", "Stopwatch", "Trainer", "new_seed", "resolve_device"]
