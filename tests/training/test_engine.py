"""The engine against the tutorial's own loop, number for number, plus control flow.

Control (stop, pause, snapshots) goes through a ``RunDriver``, as in the app.
"""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from fmnist_gui.training.config import ConfigError, TrainConfig
from fmnist_gui.training.driver import RunDriver
from fmnist_gui.training.events import BatchEnd, EpochEnd, EpochStart, RunEnd
from fmnist_gui.training.trainer import Trainer
from tests.conftest import run_stopping_after
from tests.support import tutorial_reference as tut
from tests.support.plugin_fixtures import write_plugin


def events_of(trainer, kind=None):
    events = list(trainer.run())
    return [e for e in events if kind is None or isinstance(e, kind)]


def tutorial_run(root, epochs, batch_size, lr, seed):
    """The tutorial's script with torch.manual_seed(seed) first; returns its numbers."""
    torch.manual_seed(seed)
    train_dl, test_dl = tut.make_loaders(str(root), batch_size)
    model = tut.NeuralNetwork()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses, metrics, lines = [], [], []
    for _ in range(epochs):
        tut.train_loop(train_dl, model, loss_fn, optimizer, print_fn=lines.append, losses=losses)
        metrics.append(tut.test_loop(test_dl, model, loss_fn, print_fn=lines.append))
    return losses, metrics, model


def test_matches_tutorial_loop_bit_for_bit(tiny_root, tiny_data, plugins):
    config = TrainConfig(epochs=2, batch_size=32, lr=0.05, seed=7)
    trainer = Trainer(config, tiny_data, plugins)
    events = events_of(trainer)
    ref_losses, ref_metrics, ref_model = tutorial_run(tiny_root, 2, 32, 0.05, 7)

    losses = [e.loss for e in events if isinstance(e, BatchEnd)]
    assert losses == ref_losses  # exact float equality, every batch
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [(e.test_loss, e.test_accuracy) for e in epochs] == ref_metrics
    for key, value in ref_model.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[key], value), key
    assert isinstance(events[-1], RunEnd)
    assert events[-1].status == "finished"


def test_state_dict_keys_are_the_tutorials(tiny_data, plugins):
    trainer = Trainer(TrainConfig(epochs=1, seed=0), tiny_data, plugins)
    assert list(trainer.model.state_dict()) == list(tut.NeuralNetwork().state_dict())


def test_event_sequence_and_fields(tiny_data, plugins):
    trainer = Trainer(TrainConfig(epochs=2, batch_size=100, seed=1), tiny_data, plugins)
    events = events_of(trainer)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["EpochStart"] + ["BatchEnd"] * 3 + ["EpochEnd"] + ["EpochStart"] + [
        "BatchEnd"
    ] * 3 + ["EpochEnd", "RunEnd"]
    batches = [e for e in events if isinstance(e, BatchEnd)]
    assert [e.step for e in batches] == [1, 2, 3, 4, 5, 6]
    assert [e.batch for e in batches] == [0, 1, 2] * 2
    assert [e.batch_len for e in batches[:3]] == [100, 100, 56]
    end = [e for e in events if isinstance(e, EpochEnd)][0]
    assert end.train_loss == pytest.approx(sum(e.loss for e in batches[:3]) / 3)
    assert 0 <= end.test_accuracy <= 1
    assert end.train_seconds > 0
    assert end.samples_per_second > 0
    assert trainer.history.batch_losses == [e.loss for e in batches]


def _numbers(events):
    return [
        (type(e).__name__, getattr(e, "loss", None), getattr(e, "test_loss", None))
        for e in events
        if not isinstance(e, (EpochStart, RunEnd))
    ]


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_stop_then_run_again_equals_uninterrupted(tiny_data, plugins, shuffle, optimizer):
    """Stops mid-epoch, at an epoch boundary and after the last batch (10 batches/epoch)."""
    config = TrainConfig(epochs=2, batch_size=26, seed=5, shuffle=shuffle, optimizer=optimizer)
    expected = _numbers(events_of(Trainer(config, tiny_data, plugins)))
    for stop_after in (1, 7, 10, 20):
        parted = Trainer(config, tiny_data, plugins)
        driver = RunDriver(parted)
        got = []
        for event in driver.run():
            got.append(event)
            if isinstance(event, BatchEnd) and event.step == stop_after:
                driver.request_stop()
        status = got[-1].status
        assert status == ("finished" if stop_after == 20 else "stopped"), stop_after
        got += list(driver.run())
        assert _numbers(got) == expected, f"stopped after step {stop_after}"


def test_closing_the_run_anywhere_then_running_again_equals_uninterrupted(tiny_data, plugins):
    """Stop means stop iterating: the trainer needs no flag of its own."""
    config = TrainConfig(epochs=2, batch_size=26, seed=5, shuffle=True)
    expected = _numbers(events_of(Trainer(config, tiny_data, plugins)))
    for stop_after in (1, 10, 11, 15):  # mid-epoch, between a last batch and its test pass
        parted = Trainer(config, tiny_data, plugins)
        got, run = [], parted.run()
        for event in run:
            got.append(event)
            if isinstance(event, BatchEnd) and event.step == stop_after:
                break
        run.close()
        assert parted.global_step == stop_after
        got += list(parted.run())
        assert _numbers(got) == expected, f"stopped after step {stop_after}"


def test_stop_after_an_epochs_last_batch_comes_after_its_test_pass(tiny_data, plugins):
    trainer = Trainer(TrainConfig(epochs=2, batch_size=26, seed=5), tiny_data, plugins)
    driver = RunDriver(trainer)
    events = []
    for event in driver.run():
        events.append(event)
        if isinstance(event, BatchEnd) and event.step in (10, 20):  # each epoch's last batch
            driver.request_stop()
    assert isinstance(events[-2], EpochEnd)
    assert events[-1] == RunEnd("stopped", "stopped after epoch 1")
    events = list(driver.run())  # the stop was used up; the second epoch's last batch ...
    assert events[-1].status == "finished"
    driver.request_stop()  # ... and a stop asked once every epoch is done changes nothing
    assert [type(e).__name__ for e in driver.run()] == ["RunEnd"]
    assert trainer.epochs_done == 2


def test_pause_blocks_between_batches_and_resume_continues(tiny_data, plugins):
    trainer = Trainer(TrainConfig(epochs=1, batch_size=16, seed=0), tiny_data, plugins)
    driver = RunDriver(trainer)
    steps: list[int] = []
    paused_at = threading.Event()

    def consume():
        for event in driver.run():
            if isinstance(event, BatchEnd):
                steps.append(event.step)
                if event.step == 3:
                    driver.pause()
                    paused_at.set()

    worker = threading.Thread(target=consume)
    worker.start()
    assert paused_at.wait(10)
    # Served by the paused loop: proof that it waits at the boundary after step 3.
    snapshot = driver.request_snapshot().result(timeout=10)
    assert snapshot["position"]["global_step"] == 3
    assert worker.is_alive()
    assert steps == [1, 2, 3]
    assert driver.paused
    driver.resume()
    worker.join(10)
    assert not worker.is_alive()
    assert steps == list(range(1, 17))


def test_stop_while_paused_ends_the_run(tiny_data, plugins):
    trainer = Trainer(TrainConfig(epochs=1, batch_size=16, seed=0), tiny_data, plugins)
    driver = RunDriver(trainer)
    run = driver.run()
    next(run), next(run)  # EpochStart, first batch
    driver.pause()
    driver.request_stop()
    rest = list(run)
    assert rest[-1] == RunEnd("stopped", "stopped at epoch 1, batch 1 of 16")
    assert trainer.batch_in_epoch == 1
    assert trainer.global_step == 1


def test_nan_loss_stops_with_reason_and_keeps_last_good_model(tiny_data, plugins):
    trainer = Trainer(TrainConfig(epochs=3, batch_size=16, lr=1e9, seed=0), tiny_data, plugins)
    events = events_of(trainer)
    end = events[-1]
    assert end.status == "diverged"
    assert "lower learning rate" in end.message
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("lr", -1.0, "learning rate"),
        ("lr", float("nan"), "learning rate"),
        ("lr", 0.0, "learning rate"),
        ("lr", float("inf"), "learning rate"),
        ("batch_size", 0, "batch size"),
        ("batch_size", 60001, "batch size"),
        ("epochs", 0, "epochs"),
        ("device", "tpu", "device"),
        ("seed", -3, "seed"),
    ],
)
def test_bad_settings_are_refused_with_a_message(tiny_data, plugins, field, value, words):
    with pytest.raises(ConfigError, match=words):
        Trainer(TrainConfig(**{field: value}), tiny_data, plugins)


def test_unknown_plugin_names_list_installed_ones(tiny_data, plugins):
    from fmnist_gui.plugins.host import UnknownPluginError

    with pytest.raises(UnknownPluginError, match="installed: adam, rmsprop, sgd"):
        Trainer(TrainConfig(optimizer="lion"), tiny_data, plugins)


@pytest.mark.parametrize("loss", ["cross_entropy", "nll", "mse"])
def test_each_builtin_loss_trains(tiny_data, plugins, loss):
    config = TrainConfig(
        epochs=3, batch_size=32, lr=0.5 if loss == "mse" else 0.1, loss=loss, seed=0
    )
    epochs = events_of(Trainer(config, tiny_data, plugins), EpochEnd)
    assert epochs[-1].test_loss < epochs[0].test_loss


def test_nll_equals_cross_entropy(tiny_data, plugins):
    """The tutorial: CrossEntropyLoss is LogSoftmax followed by NLLLoss."""
    a = events_of(Trainer(TrainConfig(epochs=1, loss="nll", seed=2), tiny_data, plugins), BatchEnd)
    b = events_of(Trainer(TrainConfig(epochs=1, seed=2), tiny_data, plugins), BatchEnd)
    assert [e.loss for e in a] == pytest.approx([e.loss for e in b], rel=1e-5)


def test_optimizer_params_reach_the_optimizer(tiny_data, plugins):
    config = TrainConfig(optimizer="sgd", optimizer_params={"momentum": 0.9, "nesterov": True})
    group = Trainer(config, tiny_data, plugins).optimizer.param_groups[0]
    assert group["momentum"] == 0.9
    assert group["nesterov"] is True
    assert group["lr"] == 1e-3


def test_optimizer_refusing_its_settings_names_the_plugin(tiny_data, plugins):
    from fmnist_gui.plugins.boundary import PluginFailure

    config = TrainConfig(optimizer="sgd", optimizer_params={"nesterov": True})
    with pytest.raises(PluginFailure, match="builtin_optimizers.*Nesterov"):
        Trainer(config, tiny_data, plugins)


@pytest.mark.realdata
def test_real_data_first_epoch_matches_tutorial_start(real_data_root, plugins):
    """One integration run on the real files: the first logged losses of the tutorial."""
    from fmnist_gui.training.data import load_dataset

    data = load_dataset(real_data_root, allow_download=False)
    assert len(data.train) == 60000
    assert len(data.test) == 10000
    trainer = Trainer(TrainConfig(epochs=1, seed=0), data, plugins)
    driver = RunDriver(trainer)
    losses = []
    for event in driver.run():
        if isinstance(event, BatchEnd):
            losses.append(event.loss)
            if event.step == 200:
                driver.request_stop()
    torch.manual_seed(0)
    train_dl, _ = tut.make_loaders(str(real_data_root))
    model = tut.NeuralNetwork()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    ref = []
    for i, (X, y) in enumerate(train_dl):
        loss = nn.CrossEntropyLoss()(model(X), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ref.append(loss.item())
        if i == 199:
            break
    assert losses == ref


def host_with_plugin(tmp_path, name: str, source: str):
    """A plugin host that loaded the one-file plugin ``name`` from a folder of the test's."""
    from fmnist_gui.plugins.host import get_plugin_manager

    write_plugin(tmp_path / "plugins", name, source)
    return get_plugin_manager([tmp_path / "plugins"])


def test_loss_plugin_raising_in_training_names_the_plugin(tiny_data, tmp_path):
    host = host_with_plugin(
        tmp_path,
        "bad_loss",
        "from fmnist_gui import LossSpec, hookimpl\n"
        "calls = []\n"
        "def make():\n"
        "    def loss_fn(logits, targets):\n"
        "        calls.append(1)\n"
        "        if len(calls) > 12:\n"
        "            raise RuntimeError('boom')\n"
        "        return logits.logsumexp(1).mean() - logits.gather(1, targets[:, None]).mean()\n"
        "    return loss_fn\n"
        "@hookimpl\n"
        "def fmnist_register_losses():\n"
        "    return [LossSpec(name='flaky', label='Flaky', factory=make)]\n",
    )
    assert "flaky" in host.losses, host.records["bad_loss"].error
    trainer = Trainer(TrainConfig(epochs=1, batch_size=16, loss="flaky", seed=0), tiny_data, host)
    end = events_of(trainer)[-1]
    assert end.status == "failed"
    assert "loss 'flaky' (plugin 'bad_loss') raised during " in end.message
    assert end.message.endswith("RuntimeError: boom")


@pytest.mark.parametrize(
    ("writes_first", "told"),
    [
        (False, None),  # raised before touching a weight: the model is as after the last batch
        (True, "it had already changed 1 of the 6 weight tensors"),
    ],
)
def test_optimizer_raising_in_step_says_whether_it_changed_weights(
    tiny_data, tmp_path, writes_first, told
):
    host = host_with_plugin(
        tmp_path,
        "half_step",
        "import torch\n"
        "from fmnist_gui import OptimizerSpec, hookimpl\n"
        f"WRITES_FIRST = {writes_first}\n"
        "class HalfStep(torch.optim.SGD):\n"
        "    calls = 0\n"
        "    def step(self, closure=None):\n"
        "        self.calls += 1\n"
        "        if self.calls > 12:  # after the self-test's 8 steps\n"
        "            if WRITES_FIRST:\n"
        "                with torch.no_grad():\n"
        "                    self.param_groups[0]['params'][0].add_(1.0)\n"
        "            raise RuntimeError('half done')\n"
        "        return super().step(closure)\n"
        "@hookimpl\n"
        "def fmnist_register_optimizers():\n"
        "    return [OptimizerSpec(name='half', label='Half',\n"
        "                          factory=lambda params, lr: HalfStep(params, lr=lr))]\n",
    )
    assert "half" in host.optimizers, host.records["half_step"].error
    trainer = Trainer(
        TrainConfig(epochs=1, batch_size=16, optimizer="half", seed=0), tiny_data, host
    )
    end = events_of(trainer)[-1]
    assert end.status == "failed"
    assert (
        "optimizer 'half' (plugin 'half_step') raised during step(): "
        "RuntimeError: half done" in end.message
    )
    if told is None:
        assert "already changed" not in end.message
    else:
        assert told in end.message


def test_stop_requested_before_run_is_honoured_then_used_up(tiny_data, plugins):
    trainer = Trainer(TrainConfig(epochs=1, batch_size=64, seed=0), tiny_data, plugins)
    driver = RunDriver(trainer)
    driver.request_stop()
    assert list(driver.run()) == [RunEnd("stopped", "stopped after epoch 0")]
    assert trainer.global_step == 0
    assert not driver.stop_requested
    events = list(driver.run())
    assert events[-1].status == "finished"
    assert trainer.global_step == 4


def test_snapshot_asked_while_no_run_goes_is_taken_at_once(tiny_data, plugins):
    trainer = Trainer(TrainConfig(epochs=1, batch_size=64, seed=0), tiny_data, plugins)
    driver = RunDriver(trainer)
    run_stopping_after(trainer, 2)
    future = driver.request_snapshot()
    assert future.done()
    assert future.result()["position"]["global_step"] == 2


def test_snapshot_asked_during_a_step_that_fails_reports_the_failure(tiny_data, plugins):
    trainer = Trainer(TrainConfig(epochs=1, batch_size=16, seed=0), tiny_data, plugins)
    driver = RunDriver(trainer)
    futures = []
    real_loss = trainer.loss_fn

    def loss_fn(pred, y):
        if trainer.global_step == 3:
            futures.append(driver.request_snapshot())  # as from another thread, mid-batch
            raise RuntimeError("boom")
        return real_loss(pred, y)

    trainer.loss_fn = loss_fn
    events = list(driver.run())
    assert events[-1].status == "failed"
    assert not driver.running
    with pytest.raises(RuntimeError, match="training failed: loss 'cross_entropy'"):
        futures[0].result(timeout=0)
