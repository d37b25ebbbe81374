"""The training engine: the tutorial's train_loop and test_loop, resumable.

No Qt here. ``Trainer.run()`` is a generator of events (``EpochStart``,
``BatchEnd``, ``EpochEnd``, then one ``RunEnd``); the CLI prints them, the Qt
worker forwards them to the window. ``request_stop()`` and ``pause()`` may be
called from any thread: they are flags checked between batches, so the model
and optimizer are always left at a batch boundary, ready to continue.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from fmnist_gui.errors import FmnistError
from fmnist_gui.plugins.boundary import PluginFailure, blame
from fmnist_gui.plugins.host import PluginHost, UnknownPluginError
from fmnist_gui.plugins.specs import ParamError
from fmnist_gui.training.config import ConfigError, TrainConfig
from fmnist_gui.training.data import BatchLoader, FashionMNISTData
from fmnist_gui.training.model import NeuralNetwork

RunStatus = Literal["finished", "stopped", "diverged", "failed"]


class IncompatibleState(FmnistError, ValueError):
    """A saved training state that does not fit this app, its plugins or this data."""


# ----- events ------------------------------------------------------------------
@dataclass(frozen=True)
class EpochStart:
    epoch: int  # 1-based
    num_batches: int
    resumed_at_batch: int  # 0 unless an interrupted epoch is being continued


@dataclass(frozen=True)
class BatchEnd:
    epoch: int  # 1-based
    batch: int  # 0-based index within the epoch
    step: int  # 1-based count of optimizer steps since the start of training
    loss: float
    batch_len: int
    dataset_size: int
    num_batches: int

    @property
    def current(self) -> int:
        """The tutorial's ``current``: samples before this batch (``batch * len(X)``)."""
        return self.batch * self.batch_len


@dataclass(frozen=True)
class EpochEnd:
    epoch: int
    train_loss: float  # mean of the epoch's batch losses
    test_loss: float
    test_accuracy: float  # fraction, 0..1
    train_seconds: float
    test_seconds: float
    samples_per_second: float

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class RunEnd:
    status: RunStatus
    message: str = ""


Event = EpochStart | BatchEnd | EpochEnd | RunEnd


@dataclass
class History:
    """Everything the plots need to be redrawn: kept by the engine, saved in checkpoints."""

    batch_losses: list[float] = field(default_factory=list)
    epochs: list[EpochEnd] = field(default_factory=list)


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


class Trainer:
    """One model being trained under one ``TrainConfig``.

    Construction validates everything (config, plugin names, hyperparameters)
    and raises ``ConfigError``/``ParamError``/``UnknownPluginError``/
    ``PluginFailure`` with a readable message before any training starts.
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
        # Saved in checkpoints, so a load can say which plugin version wrote it.
        self.plugin_versions = {
            name: plugins.records[name].version
            for name in (self.optimizer_spec.plugin, self.loss_spec.plugin)
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

        # Position: `epochs_done` full epochs, then `batch_in_epoch` batches of the next.
        self.epochs_done = 0
        self.batch_in_epoch = 0
        self.global_step = 0
        # Generator state at the start of the current epoch, before its
        # permutation was drawn: replaying it gives the same order on resume.
        self.epoch_generator_state: torch.Tensor = self.shuffle_generator.get_state()
        self.epoch_loss_sum = 0.0
        self.epoch_train_seconds = 0.0
        self.history = History()
        # perf_counter() when the running stretch of training began, or None:
        # lets a snapshot taken mid-epoch count the seconds not yet added.
        self._segment_started: float | None = None

        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        # Futures for snapshots asked for from other threads (request_snapshot).
        self._snapshot_lock = threading.Lock()
        self._snapshot_requests: list[Future] = []

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
        except Exception as exc:
            raise PluginFailure(
                spec.plugin,
                f"optimizer {spec.name!r} (plugin {spec.plugin!r}) failed to build: {exc}",
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
        except Exception as exc:
            raise PluginFailure(
                spec.plugin, f"loss {spec.name!r} (plugin {spec.plugin!r}) failed to build: {exc}"
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

    # ----- control (any thread) ------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()
        self._running.set()  # wake a paused loop so it can notice

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def request_snapshot(self) -> Future:
        """Ask for a ``state_dict()`` taken at the next batch boundary (any thread).

        While ``run()`` is going, the training thread fulfils the future
        between two batches (or while paused, or when the run ends) and goes
        on training. When no run is going, the owner calls
        ``serve_snapshot_requests()`` (or simply ``state_dict()``).
        """
        future: Future = Future()
        with self._snapshot_lock:
            self._snapshot_requests.append(future)
        return future

    def serve_snapshot_requests(self) -> None:
        """Fulfil pending ``request_snapshot()`` futures now; call only at a batch boundary."""
        with self._snapshot_lock:
            pending, self._snapshot_requests = self._snapshot_requests, []
        if not pending:
            return
        try:
            state = self.state_dict()
        except Exception as exc:  # noqa: BLE001 - handed to whoever asked
            for future in pending:
                future.set_exception(exc)
            return
        for future in pending:
            future.set_result(state)

    def _fail_snapshot_requests(self, message: str) -> None:
        with self._snapshot_lock:
            pending, self._snapshot_requests = self._snapshot_requests, []
        for future in pending:
            future.set_exception(RuntimeError(message))

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def finished(self) -> bool:
        return self.epochs_done >= self.config.epochs

    # ----- the loops ------------------------------------------------------------
    def run(self) -> Iterator[Event]:
        """Train until ``config.epochs`` epochs are done or a stop is requested.

        Calling it again after a stop (or after raising ``config.epochs``)
        continues exactly where the last call left off. A stop requested before
        the call is honoured at once; the request is used up when the call ends.
        """
        try:
            yield from self._run()
        finally:
            self._stop.clear()

    def _run(self) -> Iterator[Event]:
        try:
            self.serve_snapshot_requests()
            while self.epochs_done < self.config.epochs:
                if self._stop.is_set():
                    self.serve_snapshot_requests()
                    yield RunEnd("stopped", f"stopped after epoch {self.epochs_done}")
                    return
                status = yield from self._train_epoch()
                if status is not None:
                    self.serve_snapshot_requests()  # stopped or diverged: at a boundary
                    yield status
                    return
                yield self._finish_epoch()
        except PluginFailure as exc:
            # The failing step may have left the weights half-updated: no snapshot of that.
            self._fail_snapshot_requests(f"training failed: {exc}")
            yield RunEnd("failed", str(exc))
            return
        self.serve_snapshot_requests()
        yield RunEnd("finished")

    def _train_epoch(self) -> Iterator[Event]:
        loader = self.train_loader
        epoch = self.epochs_done + 1
        # Always draw the order from the state saved at the epoch's start, so
        # an epoch interrupted anywhere (even before its first batch) replays
        # the same permutation when it is continued.
        self.shuffle_generator.set_state(self.epoch_generator_state)
        order = loader.epoch_order()
        yield EpochStart(epoch, len(loader), self.batch_in_epoch)

        model, loss_fn, optimizer = self.model, self.loss_fn, self.optimizer
        # The tensors a failing step may have written (see _step_optimizer), listed
        # once an epoch: building the list costs ~30 us, reading it ~1 us a batch.
        watched = list(model.parameters())
        known = {id(p) for p in watched}
        watched += [
            p for group in optimizer.param_groups for p in group["params"] if id(p) not in known
        ]
        self._watched = watched
        model.train()
        batches = loader.batches(order, start=self.batch_in_epoch)
        started = self._segment_started = time.perf_counter()
        for X, y in batches:
            if self._snapshot_requests:  # a save asked from another thread
                self.serve_snapshot_requests()
            if self._stop.is_set() or not self._running.is_set():
                self.epoch_train_seconds += time.perf_counter() - started
                self._segment_started = None
                if not self._wait_while_paused():
                    return RunEnd(
                        "stopped",
                        f"stopped at epoch {epoch}, batch {self.batch_in_epoch} of {len(loader)}",
                    )
                started = self._segment_started = time.perf_counter()

            pred = model(X)
            with blame(self.loss_spec, "loss", "training"):
                loss = loss_fn(pred, y)
                value = loss.item()
            if not math.isfinite(value):
                self.epoch_train_seconds += time.perf_counter() - started
                self._segment_started = None
                return RunEnd(
                    "diverged",
                    f"the loss became {value} at epoch {epoch}, batch {self.batch_in_epoch}, "
                    "so this batch was not applied; the weights are probably already "
                    "unusable. Reset and try a lower learning rate.",
                )
            optimizer.zero_grad()
            with blame(self.loss_spec, "loss", "backward()"):
                loss.backward()
            self._step_optimizer()

            self.batch_in_epoch += 1
            self.global_step += 1
            self.epoch_loss_sum += value
            self.history.batch_losses.append(value)
            yield BatchEnd(
                epoch,
                self.batch_in_epoch - 1,
                self.global_step,
                value,
                len(X),
                loader.dataset_size,
                len(loader),
            )
        self.epoch_train_seconds += time.perf_counter() - started
        self._segment_started = None
        return None

    def _step_optimizer(self) -> None:
        # Every in-place write bumps a tensor's version counter: if the step raises,
        # the counters tell whether it had already changed weights (no copy needed).
        # Writes through ``p.data`` bypass the counter, so "no change" is only "none seen".
        params = self._watched
        versions = [p._version for p in params]
        try:
            with blame(self.optimizer_spec, "optimizer", "step()"):
                self.optimizer.step()
        except PluginFailure as exc:
            changed = sum(p._version != v for p, v in zip(params, versions, strict=True))
            if not changed:
                raise  # the weights are still those after the last completed batch
            raise PluginFailure(
                exc.plugin,
                f"{exc}; it had already changed {changed} of the "
                f"{len(params)} weight tensors, so this model is no longer as it was after "
                "the last completed batch: start a new one (Reset in the app), or continue "
                "from your last saved checkpoint.",
            ) from exc.__cause__

    def _wait_while_paused(self) -> bool:
        """Block while paused; return False when a stop was requested."""
        while not self._running.wait(0.05):
            self.serve_snapshot_requests()  # saving while paused
        return not self._stop.is_set()

    def _finish_epoch(self) -> EpochEnd:
        test_loss, accuracy, test_seconds = self.evaluate()
        batches = max(self.batch_in_epoch, 1)
        seconds = self.epoch_train_seconds
        result = EpochEnd(
            epoch=self.epochs_done + 1,
            train_loss=self.epoch_loss_sum / batches,
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
        self.epoch_train_seconds = 0.0
        return result

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float, float]:
        """The tutorial's test_loop: (mean batch loss, accuracy fraction, seconds)."""
        started = time.perf_counter()
        self.model.eval()
        loader = self.test_loader
        # float64 accumulators add exactly as the tutorial's Python floats do.
        test_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for X, y in loader.batches():
            pred = self.model(X)
            with blame(self.loss_spec, "loss", "testing"):
                test_loss += self.loss_fn(pred, y).double()
            correct += (pred.argmax(1) == y).sum()
        self.model.train()
        mean_loss = test_loss.item() / len(loader)
        return mean_loss, correct.item() / loader.dataset_size, time.perf_counter() - started

    # ----- snapshots (the file format lives in fmnist_gui.checkpoint) ---------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this training bit for bit, as plain data.

        Only tensors (copied to the CPU, so training may go on meanwhile) and
        Python primitives, so ``torch.load(weights_only=True)`` reads it back
        with no allowlist. Take it between two events of ``run()``: the
        generator is then suspended at a batch boundary.
        """
        seconds = self.epoch_train_seconds
        if self._segment_started is not None:  # mid-epoch, in a running stretch
            seconds += time.perf_counter() - self._segment_started
        cuda_rng = torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []
        return _cpu_copy(
            {
                "model": self.model.state_dict(),
                "optimizer": {
                    "name": self.optimizer_spec.name,
                    "plugin": self.optimizer_spec.plugin,
                    "params": _plain(self.optimizer_params),
                    "state_dict": self.optimizer.state_dict(),
                },
                "loss": {
                    "name": self.loss_spec.name,
                    "plugin": self.loss_spec.plugin,
                    "params": _plain(self.loss_params),
                },
                "config": self.config.to_dict(),
                "position": {
                    "epochs_done": self.epochs_done,
                    "batch_in_epoch": self.batch_in_epoch,
                    "global_step": self.global_step,
                    "epoch_generator_state": self.epoch_generator_state,
                    # A Python float pickles as its 8 bytes: the sum comes back exactly.
                    "epoch_loss_sum": float(self.epoch_loss_sum),
                    "epoch_train_seconds": float(seconds),
                    "seed": self.seed,
                },
                "rng": {
                    "torch_cpu": torch.get_rng_state(),
                    "cuda": list(cuda_rng),
                    "shuffle": self.shuffle_generator.get_state(),
                },
                "history": {
                    # float64 holds each float32-valued loss exactly.
                    "batch_losses": torch.tensor(self.history.batch_losses, dtype=torch.float64),
                    "epochs": [e.as_dict() for e in self.history.epochs],
                },
                "data": {
                    "train_size": self.train_loader.dataset_size,
                    "test_size": self.test_loader.dataset_size,
                },
                "torch_threads": torch.get_num_threads(),
                "plugins": dict(self.plugin_versions),
            }
        )

    @classmethod
    def from_state_dict(
        cls,
        state: dict[str, Any],
        data: FashionMNISTData,
        plugins: PluginHost,
        *,
        epochs: int | None = None,
    ) -> Trainer:
        """A new Trainer that continues exactly where ``state`` (``state_dict()``) left off.

        ``epochs`` replaces the saved total. Raises ``ConfigError``,
        ``ParamError``, ``UnknownPluginError``, ``PluginFailure`` or
        ``IncompatibleState``; on failure torch's global RNG is left as it was.
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
        try:
            trainer.optimizer.load_state_dict(state["optimizer"]["state_dict"])
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise IncompatibleState(
                f"its optimizer state does not fit optimizer {config.optimizer!r}: {exc}"
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
        trainer.epoch_train_seconds = float(position["epoch_train_seconds"])
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
            epochs=[
                EpochEnd(**{k: e[k] for k in EpochEnd.__dataclass_fields__})
                for e in history["epochs"]
            ],
        )
        # Matrix products may round differently with another thread count;
        # use the saved one where this machine has the cores for it.
        threads = state["torch_threads"]
        if threads != torch.get_num_threads() and 1 <= threads <= (os.cpu_count() or 1):
            torch.set_num_threads(threads)
        return trainer

    # ----- odds and ends ----------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer_spec.name,
            "optimizer_params": self.optimizer_params,
            "loss": self.loss_spec.name,
            "seed": self.seed,
            "device": str(self.device),
        }


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


__all__ = [
    "BatchEnd",
    "ConfigError",
    "EpochEnd",
    "EpochStart",
    "Event",
    "History",
    "IncompatibleState",
    "ParamError",
    "PluginFailure",
    "RunEnd",
    "Trainer",
    "UnknownPluginError",
]
