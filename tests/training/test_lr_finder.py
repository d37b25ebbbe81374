"""The learning-rate range test: a copy of the model, any optimizer plugin, a sane suggestion."""

from __future__ import annotations

import math
import threading

import pytest
import torch

from fmnist_gui.training.config import ConfigError, TrainConfig
from fmnist_gui.training.data import load_dataset
from fmnist_gui.training.lr_finder import (
    FinderEnd,
    FinderPoint,
    FinderSettings,
    LRFinder,
    steepest_descent,
)
from fmnist_gui.training.trainer import Trainer
from tests.conftest import run_stopping_after

SHORT = FinderSettings(num_steps=40)


def test_the_real_model_its_optimizer_and_the_global_rng_are_untouched(tiny_data, plugins):
    trainer = Trainer(TrainConfig(epochs=2, seed=5, optimizer="adam"), tiny_data, plugins)
    run_stopping_after(trainer, 3)
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    moments = {
        k: v.clone()
        for k, v in trainer.optimizer.state_dict()["state"][0].items()
        if isinstance(v, torch.Tensor)
    }
    rng = torch.get_rng_state()

    finder = LRFinder(trainer.config, tiny_data, plugins, weights=trainer.model.state_dict())
    end = finder.run_to_end()

    assert end.status in ("finished", "exploded")
    assert len(finder.curve.lrs) > 3
    # It trained its own weights, starting from the model's...
    assert not torch.equal(
        finder.model.state_dict()["linear_relu_stack.0.weight"],
        weights["linear_relu_stack.0.weight"],
    )
    # ...and left the model's own, its optimizer state and the global generator alone.
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(tensor, weights[name]), name
    for name, tensor in trainer.optimizer.state_dict()["state"][0].items():
        if isinstance(tensor, torch.Tensor):
            assert torch.equal(tensor, moments[name]), name
    assert trainer.optimizer.param_groups[0]["lr"] == 1e-3
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_any_optimizer_plugin_sweeps_the_lr_up_exponentially(tiny_data, plugins, optimizer):
    finder = LRFinder(
        TrainConfig(optimizer=optimizer, seed=1, batch_size=16), tiny_data, plugins, settings=SHORT
    )
    events = list(finder.run())
    points = [e for e in events if isinstance(e, FinderPoint)]
    assert isinstance(events[-1], FinderEnd)
    assert events[-1].status in ("finished", "exploded")
    # 40 steps of 16 from 256 images: the training set is gone through more than once.
    assert len(points) > 16 or events[-1].status == "exploded"
    assert points[0].lr == pytest.approx(1e-7)
    ratios = [b.lr / a.lr for a, b in zip(points, points[1:], strict=False)]
    assert ratios == pytest.approx([ratios[0]] * len(ratios))
    assert ratios[0] == pytest.approx((10 / 1e-7) ** (1 / 39))
    assert [p.lr for p in points] == finder.curve.lrs
    # The optimizer really trains with the swept lr.
    assert finder.optimizer.param_groups[0]["lr"] == pytest.approx(points[-1].lr)


def test_a_stop_from_another_thread_ends_it_at_a_batch_boundary(tiny_data, plugins):
    stop = threading.Event()
    finder = LRFinder(TrainConfig(seed=2, batch_size=16), tiny_data, plugins, stop=stop)
    seen = 0
    end = None
    for event in finder.run():
        if isinstance(event, FinderPoint):
            seen += 1
            if seen == 5:
                threading.Thread(target=finder.request_stop).start()
                while not stop.is_set():
                    pass
        else:
            end = event
    assert end is not None
    assert end.status == "stopped"
    assert seen == 5
    assert len(finder.curve.losses) == 5


def test_the_suggestion_is_the_steepest_fall_before_the_minimum():
    lrs = [10 ** (-6 + k / 4) for k in range(25)]  # 1e-6 .. 1
    # Flat, then a fall steepest around lrs[12] (1e-3), a minimum at 18, then a climb.
    losses = [2.3 - 1.5 / (1 + math.exp(-(k - 12))) for k in range(19)] + [
        0.8 + 0.5 * k for k in range(1, 7)
    ]
    assert steepest_descent(lrs, losses) == lrs[12]
    assert steepest_descent(lrs[:2], losses[:2]) is None
    assert steepest_descent(lrs, [1.0] * 25) is None  # nothing falls


def test_a_fall_within_the_noise_is_no_suggestion():
    # A trained model's curve: flat but for noise, as the raw losses show.
    lrs = [10 ** (-7 + k / 30) for k in range(240)]
    losses = [0.4 + (0.15 if k % 2 else -0.15) for k in range(240)]
    smoothed = [0.42 - 0.04 * math.sin(k / 9) - (0.0003 * k if k < 200 else 0) for k in range(240)]
    assert steepest_descent(lrs, smoothed) is not None  # the noise looks like a descent...
    assert steepest_descent(lrs, smoothed, losses=losses, smoothing=0.95) is None  # ...but is not
    # A real fall, far beyond the same noise, still is one.
    falling = [2.3 - 1.5 / (1 + math.exp(-(k - 120) / 10)) for k in range(240)]
    found = steepest_descent(lrs, falling, losses=losses, smoothing=0.95)
    assert found == pytest.approx(lrs[120], rel=0.1)


@pytest.mark.parametrize(
    "settings",
    [
        FinderSettings(start_lr=0),
        FinderSettings(start_lr=1, end_lr=0.1),
        FinderSettings(num_steps=2),
        FinderSettings(smoothing=1.0),
        FinderSettings(explode_factor=1.0),
    ],
)
def test_bad_settings_are_refused(tiny_data, plugins, settings):
    with pytest.raises(ConfigError):
        LRFinder(TrainConfig(), tiny_data, plugins, settings=settings)


def test_sgd_on_the_real_data_suggests_a_sane_lr(real_data_root, plugins):
    data = load_dataset(real_data_root, allow_download=False)
    finder = LRFinder(TrainConfig(optimizer="sgd", seed=0), data, plugins)
    end = finder.run_to_end()
    # Long before lr 10 the loss explodes, and the test ends there.
    assert end.status == "exploded", end
    assert "exploded" in end.message
    assert len(finder.curve.lrs) < finder.settings.num_steps
    assert finder.curve.smoothed[-1] > 4 * min(finder.curve.smoothed)
    assert end.suggestion is not None
    # The tutorial's 1e-3 trains slowly, 10 explodes: a good SGD lr lies between.
    assert 1e-3 <= end.suggestion <= 1.0
    # The loss fell on the way to it.
    assert min(finder.curve.smoothed) < finder.curve.smoothed[0] - 0.5
