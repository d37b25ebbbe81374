"""The learning-rate range test ("Find LR"), on a copy of a model: no Qt, no threads.

Leslie Smith's test as fastai and torch-lr-finder run it: the lr rises
exponentially from ``start_lr`` to ``end_lr`` over ``num_steps`` batches, the
loss of each batch is smoothed (a debiased moving average), and the test ends
early once the smoothed loss exceeds ``explode_factor`` times the best seen.
The suggested lr is where the smoothed loss falls fastest against log(lr).

The test trains its own model, built from a copy of the given weights (or
fresh ones), with its own optimizer from the chosen plugin: the real model, its
optimizer state and torch's global random state are never touched. ``run()``
yields a ``FinderPoint`` per batch and ends with a ``FinderEnd``; a stop asked
from any thread (``request_stop()``) ends it at the next batch boundary.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch

from fmnist_gui.plugins.boundary import PluginFailure, blame
from fmnist_gui.plugins.host import PluginHost
from fmnist_gui.training.config import ConfigError, TrainConfig
from fmnist_gui.training.data import BatchLoader, FashionMNISTData
from fmnist_gui.training.loop import DivergedError, train_one_epoch
from fmnist_gui.training.model import NeuralNetwork
from fmnist_gui.training.trainer import new_seed, resolve_device

FinderStatus = Literal["finished", "exploded", "stopped", "failed"]


@dataclass(frozen=True)
class FinderSettings:
    """How the range test sweeps the lr; the defaults suit this network."""

    start_lr: float = 1e-7
    end_lr: float = 10.0
    num_steps: int = 300
    smoothing: float = 0.95  # weight of the moving average over batch losses
    explode_factor: float = 4.0  # stop once the smoothed loss exceeds this times the best

    def validate(self) -> FinderSettings:
        """Raise ``ConfigError`` for the first bad setting; return self otherwise."""
        if not (0 < self.start_lr < self.end_lr) or not math.isfinite(self.end_lr):
            raise ConfigError(
                f"the lr range must rise from above 0, got {self.start_lr:g} to {self.end_lr:g}"
            )
        if isinstance(self.num_steps, bool) or not isinstance(self.num_steps, int):
            raise ConfigError(f"the number of steps must be a whole number, got {self.num_steps!r}")
        if self.num_steps < 3:
            raise ConfigError(f"the range test needs at least 3 steps, got {self.num_steps}")
        if not 0 <= self.smoothing < 1:
            raise ConfigError(f"smoothing must be from 0 to below 1, got {self.smoothing:g}")
        if not self.explode_factor > 1:
            raise ConfigError(f"the explosion factor must be above 1, got {self.explode_factor:g}")
        return self

    def lr_at(self, step: int) -> float:
        """The lr of batch ``step`` (0-based): ``start_lr`` at 0, ``end_lr`` at the last."""
        ratio = self.end_lr / self.start_lr
        return self.start_lr * ratio ** (step / (self.num_steps - 1))


@dataclass(frozen=True)
class FinderPoint:
    """One batch of the test: the lr it trained with, its loss and the smoothed loss."""

    step: int  # 0-based
    lr: float
    loss: float
    smoothed: float


@dataclass(frozen=True)
class FinderEnd:
    """The test is over; ``suggestion`` is None when too few points were taken."""

    status: FinderStatus
    suggestion: float | None
    message: str = ""


@dataclass
class FinderCurve:
    """The points so far: appended by the thread that runs the test, read by any."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)


def steepest_descent(
    lrs: list[float],
    smoothed: list[float],
    skip_start: int = 3,
    *,
    losses: list[float] | None = None,
    smoothing: float = 0.0,
) -> float | None:
    """The lr where ``smoothed`` falls fastest against log10(lr), before its minimum.

    The slope at each point is taken across a window of about a twentieth of
    the points on either side, so the batch-to-batch noise left in the
    smoothed loss does not pass for a descent. Points after the lowest
    smoothed loss are left out (the loss climbs there), and the first
    ``skip_start`` too (the average is still settling).

    Given the raw ``losses`` (and the ``smoothing`` weight that made
    ``smoothed``), the fall across that window must also stand out from the
    noise: more than ``NOISE_FACTOR`` times the noise the moving average
    leaves. A curve that is flat but for noise (typical of a model that has
    trained already) then has no suggestion. None too when fewer than three
    points remain or nothing falls.
    """
    n = len(smoothed)
    if n != len(lrs) or n == 0:
        return None
    finite = [i for i in range(n) if math.isfinite(smoothed[i])]
    if not finite:
        return None
    lowest = min(finite, key=lambda i: smoothed[i])
    first = min(skip_start, max(lowest - 2, 0))
    index = list(range(first, lowest + 1))
    if len(index) < 3:
        return None
    x = [math.log10(lrs[i]) for i in index]
    y = [smoothed[i] for i in index]
    half = max(1, n // 20)
    best_slope, best, fall = math.inf, None, 0.0
    for k in range(len(index)):
        # Central differences across the window inside, one-sided at the ends.
        lo, hi = max(k - half, 0), min(k + half, len(index) - 1)
        slope = (y[hi] - y[lo]) / (x[hi] - x[lo])
        if slope < best_slope:
            best_slope, best, fall = slope, index[k], y[lo] - y[hi]
    if best is None or best_slope >= 0:
        return None
    if losses is not None and fall <= NOISE_FACTOR * _smoothed_noise(
        losses[first : lowest + 1], y, smoothing
    ):
        return None
    return lrs[best]


#: How many times the smoothed loss's own noise a suggested descent must fall.
NOISE_FACTOR = 4.0


def _smoothed_noise(losses: list[float], smoothed: list[float], smoothing: float) -> float:
    # The raw losses' spread about the average, as a moving average of weight
    # ``smoothing`` passes it on: sigma * sqrt((1 - b) / (1 + b)) for white noise.
    residuals = [a - b for a, b in zip(losses, smoothed, strict=True) if math.isfinite(a)]
    if len(residuals) < 2:
        return 0.0
    mean = sum(residuals) / len(residuals)
    sigma = math.sqrt(sum((r - mean) ** 2 for r in residuals) / len(residuals))
    return sigma * math.sqrt((1 - smoothing) / (1 + smoothing))


class LRFinder:
    """One range test for ``config``'s optimizer, loss and batch size, on a copy of ``weights``.

    ``weights`` (a model ``state_dict``) is copied at construction; None starts
    from fresh weights seeded with ``config.seed`` (or a random seed). The
    batches come from the training set, shuffled by the test's own generator.
    Construction raises an ``FmnistError`` for a bad setting or plugin.
    """

    def __init__(
        self,
        config: TrainConfig,
        data: FashionMNISTData,
        plugins: PluginHost,
        *,
        weights: Mapping[str, torch.Tensor] | None = None,
        settings: FinderSettings | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.config = config.validate()
        self.settings = (settings or FinderSettings()).validate()
        self.device = resolve_device(config.device)
        self.optimizer_spec = plugins.optimizer(config.optimizer)
        self.loss_spec = plugins.loss(config.loss)
        optimizer_params = self.optimizer_spec.resolve(config.optimizer_params)
        loss_params = self.loss_spec.resolve(config.loss_params)
        self._stop = stop or threading.Event()
        self.curve = FinderCurve()
        seed = config.seed if config.seed is not None else new_seed()
        # Its own weights and its own randomness: the global generator a running
        # training saves in its checkpoints is left exactly as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = NeuralNetwork().to(self.device)
        if weights is not None:
            # load_state_dict copies into the test's own tensors.
            self.model.load_state_dict(dict(weights))
        with blame(self.optimizer_spec, "optimizer", "construction"):
            self.optimizer = self.optimizer_spec.factory(
                self.model.parameters(), lr=self.settings.start_lr, **optimizer_params
            )
        with blame(self.loss_spec, "loss", "construction"):
            self.loss_fn = self.loss_spec.factory(**loss_params)
        if isinstance(self.loss_fn, torch.nn.Module):
            self.loss_fn = self.loss_fn.to(self.device)
        self.loader = BatchLoader(
            data.train,
            config.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
            device=self.device,
        )

    def request_stop(self) -> None:
        """End the test at the next batch boundary (any thread)."""
        self._stop.set()

    @property
    def suggestion(self) -> float | None:
        """The suggested lr for the points so far."""
        curve = self.curve
        n = len(curve.smoothed)  # another thread may be appending
        return steepest_descent(
            curve.lrs[:n],
            curve.smoothed[:n],
            losses=curve.losses[:n],
            smoothing=self.settings.smoothing,
        )

    def run(self) -> Generator[FinderPoint | FinderEnd, None, None]:
        """A ``FinderPoint`` per batch, then one ``FinderEnd``."""
        self._status: FinderStatus = "finished"
        self._message = ""
        try:
            yield from self._points()
        except DivergedError as exc:
            self._status = "exploded"
            self._message = f"{exc} at lr {self.settings.lr_at(len(self.curve.lrs)):.3g}"
        except PluginFailure as exc:
            self._status, self._message = "failed", str(exc)
        failed = self._status == "failed"
        yield FinderEnd(self._status, None if failed else self.suggestion, self._message)

    def _points(self) -> Generator[FinderPoint, None, None]:
        settings, curve = self.settings, self.curve
        average, weight_sum, best = 0.0, 0.0, math.inf
        step = 0
        while True:
            # Epochs of the training set as needed: a few hundred batches of 64 are
            # less than one, but a large batch size may need the data again.
            batches = train_one_epoch(
                self.model,
                self.loss_fn,
                self.optimizer,
                self.loader.batches(self.loader.epoch_order()),
                loss_spec=self.loss_spec,
                optimizer_spec=self.optimizer_spec,
            )
            try:
                for loss, _n in batches:
                    lr = settings.lr_at(step)
                    average = settings.smoothing * average + (1 - settings.smoothing) * loss
                    weight_sum = settings.smoothing * weight_sum + (1 - settings.smoothing)
                    smoothed = average / weight_sum
                    curve.lrs.append(lr)
                    curve.losses.append(loss)
                    curve.smoothed.append(smoothed)
                    yield FinderPoint(step, lr, loss, smoothed)
                    step += 1
                    best = min(best, smoothed)
                    # A loss that can go negative (a plugin's) has no "times the best".
                    if best > 0 and smoothed > settings.explode_factor * best:
                        self._status, self._message = (
                            "exploded",
                            f"the loss exploded at lr {lr:.3g}",
                        )
                        return
                    if self._stop.is_set():
                        self._status, self._message = "stopped", f"stopped at lr {lr:.3g}"
                        return
                    if step >= settings.num_steps:
                        return
                    self._set_lr(settings.lr_at(step))
            finally:
                batches.close()

    def run_to_end(self) -> FinderEnd:
        """Run the whole test (in the calling thread); its ``FinderEnd``."""
        for event in self.run():
            if isinstance(event, FinderEnd):
                return event
        raise RuntimeError("the range test ended without a result")  # run() always ends with one

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr


__all__ = [
    "FinderCurve",
    "FinderEnd",
    "FinderPoint",
    "FinderSettings",
    "LRFinder",
    "steepest_descent",
]
