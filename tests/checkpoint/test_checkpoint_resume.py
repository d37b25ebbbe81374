"""Bitwise-exact resume: stop anywhere, save, load (in a new process too), continue.

The continued training must produce the very same per-batch losses and epoch
metrics (``==`` on floats, no tolerance) as one uninterrupted run with the
same seed, for SGD and Adam, with shuffling on and off. Also: a save killed at
random moments never leaves a torn file.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import threading
from dataclasses import replace

import pytest
import torch

from fmnist_gui import checkpoint as ckpt
from fmnist_gui.training.config import TrainConfig
from fmnist_gui.training.driver import RunDriver
from fmnist_gui.training.events import BatchEnd, EpochEnd
from fmnist_gui.training.trainer import Trainer
from tests.conftest import run_stopping_after

BATCHES_PER_EPOCH = 8  # 256 tiny training images / 32


def config_for(optimizer: str, shuffle: bool, epochs: int = 2) -> TrainConfig:
    lr = 0.05 if optimizer == "sgd" else 0.002
    return TrainConfig(
        epochs=epochs, batch_size=32, lr=lr, optimizer=optimizer, shuffle=shuffle, seed=11
    )


def metrics(trainer: Trainer) -> list[tuple[float, float, float]]:
    return [(e.train_loss, e.test_loss, e.test_accuracy) for e in trainer.history.epochs]


def assert_same_training(resumed: Trainer, reference: Trainer) -> None:
    assert resumed.history.batch_losses == reference.history.batch_losses  # exact floats
    assert metrics(resumed) == metrics(reference)
    assert resumed.global_step == reference.global_step
    for key, value in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


@pytest.fixture
def reference(tiny_data, plugins):
    """Uninterrupted runs, one per (optimizer, shuffle), made on first use."""
    made: dict[tuple[str, bool], Trainer] = {}

    def get(optimizer: str, shuffle: bool) -> Trainer:
        if (optimizer, shuffle) not in made:
            trainer = Trainer(config_for(optimizer, shuffle), tiny_data, plugins)
            assert list(trainer.run())[-1].status == "finished"
            made[optimizer, shuffle] = trainer
        return made[optimizer, shuffle]

    return get


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
@pytest.mark.parametrize("where", ["mid-epoch", "epoch-boundary", "after-last-batch"])
def test_resume_is_bitwise_identical(
    tmp_path, tiny_data, plugins, reference, optimizer, shuffle, where
):
    if where == "mid-epoch":  # in the second epoch, 3 batches in
        first = Trainer(config_for(optimizer, shuffle), tiny_data, plugins)
        end = run_stopping_after(first, BATCHES_PER_EPOCH + 3)
        assert end.status == "stopped"
        assert (first.epochs_done, first.batch_in_epoch) == (1, 3)
    elif where == "epoch-boundary":  # stop asked at the first epoch's end
        first = Trainer(config_for(optimizer, shuffle), tiny_data, plugins)
        driver = RunDriver(first)
        for event in driver.run():
            if isinstance(event, EpochEnd):
                driver.request_stop()
        assert (first.epochs_done, first.batch_in_epoch) == (1, 0)
    else:  # a finished one-epoch training, continued to two epochs
        first = Trainer(config_for(optimizer, shuffle, epochs=1), tiny_data, plugins)
        assert list(first.run())[-1].status == "finished"

    path = tmp_path / "ck.pt"
    ckpt.save_checkpoint(path, first.state_dict())
    torch.manual_seed(999)  # whatever the process did meanwhile must not matter
    resumed = ckpt.load_trainer(path, tiny_data, plugins, epochs=2)
    events = list(resumed.run())
    assert events[-1].status == "finished"
    assert_same_training(resumed, reference(optimizer, shuffle))
    # The events of the continued run are the reference's tail, too.
    losses = [e.loss for e in events if isinstance(e, BatchEnd)]
    assert losses == reference(optimizer, shuffle).history.batch_losses[-len(losses) :]


def test_stop_at_every_batch_adam_shuffled(tiny_data, plugins, reference):
    ref = reference("adam", True)
    for batches in range(1, 2 * BATCHES_PER_EPOCH):
        first = Trainer(config_for("adam", True), tiny_data, plugins)
        run_stopping_after(first, batches)
        assert first.global_step == batches
        # The file format in memory (the other tests write real files).
        buffer = io.BytesIO()
        torch.save(first.state_dict(), buffer)
        buffer.seek(0)
        state = torch.load(buffer, weights_only=True)
        resumed = Trainer.from_state_dict(state, tiny_data, plugins)
        list(resumed.run())
        assert_same_training(resumed, ref)


def test_snapshot_while_training_goes_on(tmp_path, tiny_data, plugins, reference):
    """The app's worker snapshots between events and keeps training: both lines agree."""
    ref = reference("sgd", True)
    trainer = Trainer(config_for("sgd", True), tiny_data, plugins)
    path = tmp_path / "ck.pt"
    for event in trainer.run():
        if isinstance(event, BatchEnd) and event.step == 5:
            ckpt.save_checkpoint(path, trainer.state_dict())
    assert_same_training(trainer, ref)  # saving did not disturb the running training
    resumed = ckpt.load_trainer(path, tiny_data, plugins)
    assert resumed.global_step == 5
    list(resumed.run())
    assert_same_training(resumed, ref)


def test_loaded_training_restores_history_and_position(tmp_path, tiny_data, plugins):
    first = Trainer(config_for("adam", True, epochs=3), tiny_data, plugins)
    run_stopping_after(first, BATCHES_PER_EPOCH + 5)
    path = tmp_path / "ck.pt"
    ckpt.save_checkpoint(path, first.state_dict())
    loaded = ckpt.load_trainer(path, tiny_data, plugins)
    assert loaded.history.batch_losses == first.history.batch_losses
    assert loaded.history.epochs == first.history.epochs  # all fields, timings included
    assert (loaded.epochs_done, loaded.batch_in_epoch, loaded.global_step) == (1, 5, 13)
    assert loaded.epoch_loss_sum == first.epoch_loss_sum
    assert loaded.config.epochs == 3
    assert loaded.seed == first.seed
    assert loaded.optimizer_params == first.optimizer_params
    assert loaded.epoch_train_seconds == pytest.approx(first.epoch_train_seconds)


NEW_PROCESS = r"""
import json, sys
from pathlib import Path
from fmnist_gui import checkpoint as ckpt
from fmnist_gui.training.data import load_dataset
from fmnist_gui.training.events import BatchEnd
from fmnist_gui.plugins.host import get_plugin_manager

root, plugin_dir, *paths = sys.argv[1:]
data = load_dataset(Path(root), allow_download=False)
plugins = get_plugin_manager([Path(plugin_dir)])
out = {}
for path in paths:
    trainer = ckpt.load_trainer(Path(path), data, plugins)
    events = list(trainer.run())
    out[path] = {
        "status": events[-1].status,
        "losses": [x.hex() for x in trainer.history.batch_losses],
        "metrics": [[e.train_loss.hex(), e.test_loss.hex(), e.test_accuracy.hex()]
                    for e in trainer.history.epochs],
    }
print(json.dumps(out))
"""


def test_resume_in_a_new_process(tmp_path, tiny_root, tiny_data, plugins, reference):
    paths = {}
    for optimizer in ("sgd", "adam"):
        for shuffle in (False, True):
            first = Trainer(config_for(optimizer, shuffle), tiny_data, plugins)
            run_stopping_after(first, BATCHES_PER_EPOCH + 2)
            path = tmp_path / f"{optimizer}-{shuffle}.pt"
            ckpt.save_checkpoint(path, first.state_dict())
            paths[str(path)] = (optimizer, shuffle)
    result = subprocess.run(
        [sys.executable, "-c", NEW_PROCESS, str(tiny_root), str(tmp_path / "none"), *paths],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    for path, key in paths.items():
        ref = reference(*key)
        assert out[path]["status"] == "finished"
        assert out[path]["losses"] == [x.hex() for x in ref.history.batch_losses], key
        assert out[path]["metrics"] == [[a.hex(), b.hex(), c.hex()] for a, b, c in metrics(ref)]


KILLER = r"""
import os, random, shutil, signal, sys, time
from pathlib import Path
from fmnist_gui import checkpoint as ckpt

a, b, target, snapshots, runs, seed = sys.argv[1:]
states = [ckpt.read_checkpoint(a), ckpt.read_checkpoint(b)]
rng = random.Random(int(seed))
started = time.perf_counter()
ckpt.save_checkpoint(Path(target), states[0])
save_seconds = time.perf_counter() - started
for i in range(int(runs)):
    pid = os.fork()  # a saving subprocess that already has torch imported
    if pid == 0:
        try:
            n = i
            while True:
                ckpt.save_checkpoint(Path(target), states[n % 2])
                n += 1
        finally:
            os._exit(1)
    time.sleep(rng.uniform(0, 3 * save_seconds))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    shutil.copyfile(target, os.path.join(snapshots, f"{i}.pt"))
print(save_seconds)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_killing_a_save_at_random_moments_never_tears_the_file(tmp_path, tiny_data, plugins):
    runs = 30
    a = Trainer(config_for("adam", True), tiny_data, plugins)
    run_stopping_after(a, 3)
    b = Trainer(config_for("adam", True), tiny_data, plugins)
    run_stopping_after(b, 11)
    ckpt.save_checkpoint(tmp_path / "a.pt", a.state_dict())
    ckpt.save_checkpoint(tmp_path / "b.pt", b.state_dict())
    folder = tmp_path / "target"
    snapshots = tmp_path / "snapshots"
    folder.mkdir()
    snapshots.mkdir()
    target = folder / "ck.pt"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLER,
            str(tmp_path / "a.pt"),
            str(tmp_path / "b.pt"),
            str(target),
            str(snapshots),
            str(runs),
            str(random.randrange(2**32)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    steps = []
    for i in range(runs):
        checkpoint = ckpt.read_checkpoint(snapshots / f"{i}.pt")  # never torn
        steps.append(checkpoint["position"]["global_step"])
        expected = a if steps[-1] == 3 else b
        assert torch.equal(
            checkpoint["model"]["linear_relu_stack.0.weight"],
            expected.model.linear_relu_stack[0].weight,
        )
    assert set(steps) <= {3, 11}
    # Killed saves leave only their temp files beside the target, never in its place.
    leftovers = [p.name for p in folder.iterdir() if p != target]
    assert all(name.startswith(".ck.pt.") and name.endswith(".part") for name in leftovers)
    print(
        f"kills: {runs}, snapshots with A/B: {steps.count(3)}/{steps.count(11)}, "
        f"torn temp files left by killed saves: {len(leftovers)}, "
        f"one save takes {float(result.stdout):.3f} s"
    )


def test_resume_with_a_different_total_of_epochs(tmp_path, tiny_data, plugins, reference):
    first = Trainer(config_for("sgd", False, epochs=5), tiny_data, plugins)
    run_stopping_after(first, 3)
    path = tmp_path / "ck.pt"
    ckpt.save_checkpoint(path, first.state_dict())
    resumed = ckpt.load_trainer(path, tiny_data, plugins, epochs=2)
    # The config comes back with the hyperparameters resolved (defaults filled in).
    assert resumed.config.optimizer_params == first.optimizer_params
    assert replace(resumed.config, optimizer_params={}, loss_params={}) == replace(
        first.config, epochs=2
    )
    list(resumed.run())
    assert_same_training(resumed, reference("sgd", False))


def test_snapshot_requested_from_another_thread_running_and_paused(tiny_data, plugins, reference):
    """What the app's Save does during training: the training thread takes the snapshot."""
    ref = reference("adam", True)
    trainer = Trainer(config_for("adam", True), tiny_data, plugins)
    driver = RunDriver(trainer)
    driver.pause()  # the loop will wait at its first batch boundary
    events: list = []
    thread = threading.Thread(target=lambda: events.extend(driver.run()))
    thread.start()
    try:
        paused = driver.request_snapshot().result(timeout=120)  # served while paused
        driver.resume()
        running = driver.request_snapshot().result(timeout=120)  # served between batches
    finally:
        driver.resume()
        thread.join(120)
    assert events[-1].status == "finished"
    assert paused["position"]["global_step"] == 0
    assert_same_training(trainer, ref)  # the snapshots did not disturb the training
    for snapshot in (paused, running):
        resumed = Trainer.from_state_dict(snapshot, tiny_data, plugins)
        list(resumed.run())
        assert_same_training(resumed, ref)
