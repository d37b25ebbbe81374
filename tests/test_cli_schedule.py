"""fmnist-train --scheduler / --sched-param / --changes, and --resume with them."""

from __future__ import annotations

import json
import threading

import torch

from fmnist_gui import checkpoint as ckpt
from fmnist_gui.cli import main
from fmnist_gui.training.config import TrainConfig
from fmnist_gui.training.driver import RunDriver
from fmnist_gui.training.events import BatchEnd
from fmnist_gui.training.trainer import Trainer


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_scheduler_options_train_as_the_engine_does(capsys, tmp_path, tiny_root, tiny_data):
    path = tmp_path / "ck.pt"
    base = ["--data-dir", tiny_root, "--no-download", "--seed", 3, "--epochs", 2]
    code, _, err = cli(
        capsys, *base, "--scheduler", "cosine", "--sched-param", "eta_min=1e-4", "--save", path
    )
    assert code == 0, err
    saved = ckpt.read_checkpoint(path)
    assert saved["scheduler"]["name"] == "cosine"
    assert saved["scheduler"]["params"] == {"eta_min": 1e-4}
    lrs = saved["history"]["lrs"].tolist()
    assert lrs[0] == 1e-3
    assert lrs == sorted(lrs, reverse=True)
    assert lrs[-1] < 1e-3

    from fmnist_gui.plugins.host import get_plugin_manager

    config = TrainConfig(epochs=2, seed=3, scheduler="cosine", scheduler_params={"eta_min": 1e-4})
    trainer = Trainer(config, tiny_data, get_plugin_manager([tmp_path / "none"]))
    list(trainer.run())
    assert saved["history"]["batch_losses"].tolist() == trainer.history.batch_losses
    assert lrs == trainer.history.lrs


def test_changes_file_replays_a_live_change(capsys, tmp_path, tiny_root, tiny_data, plugins):
    # The live run (4 batches an epoch): another thread changes lr and momentum
    # through the driver after batch 2, and lr again after batch 6.
    live = Trainer(TrainConfig(epochs=2, seed=4, lr=0.01), tiny_data, plugins)
    driver = RunDriver(live)
    requests = {2: {"lr": 0.05, "momentum": 0.9}, 6: {"lr": 0.02}}
    reached, asked = threading.Semaphore(0), threading.Semaphore(0)

    def other_thread():
        for step in sorted(requests):
            reached.acquire()
            driver.request_change(requests[step])
            asked.release()

    thread = threading.Thread(target=other_thread)
    thread.start()
    for event in driver.run():
        if isinstance(event, BatchEnd) and event.step in requests:
            reached.release()
            assert asked.acquire(timeout=60)
    thread.join()
    assert [c["step"] for c in live.history.changes] == [2, 2, 6]

    # Its recorded changes, replayed headless from a file, split over a resume.
    changes = tmp_path / "changes.json"
    changes.write_text(json.dumps(live.history.changes))
    base = ["--data-dir", tiny_root, "--no-download", "--seed", 4, "--lr", 0.01]
    first, second = tmp_path / "first.pt", tmp_path / "second.pt"
    code, _, err = cli(capsys, *base, "--epochs", 1, "--changes", changes, "--save", first)
    assert code == 0, err
    code, _, err = cli(
        capsys, "--data-dir", tiny_root, "--no-download", "--resume", first, "--epochs", 2,
        "--changes", changes, "--save", second,
    )  # fmt: skip
    assert code == 0, err
    saved = ckpt.read_checkpoint(second)
    assert saved["history"]["changes"] == live.history.changes
    assert saved["history"]["batch_losses"].tolist() == live.history.batch_losses
    assert saved["history"]["lrs"].tolist() == live.history.lrs
    for key, value in live.model.state_dict().items():
        assert torch.equal(saved["model"][key], value), key

    # --resume alone continues with the changes the checkpoint has (step 2's, not 6's).
    code, _, err = cli(
        capsys, "--data-dir", tiny_root, "--no-download", "--resume", first, "--epochs", 2,
        "--save", second,
    )  # fmt: skip
    assert code == 0, err
    saved = ckpt.read_checkpoint(second)
    assert saved["history"]["changes"] == live.history.changes[:2]
    losses = saved["history"]["batch_losses"].tolist()
    assert losses[:7] == live.history.batch_losses[:7]
    assert losses[7] != live.history.batch_losses[7]


def test_bad_schedule_options_are_usage_errors(capsys, tmp_path, tiny_root):
    base = ["--data-dir", tiny_root, "--no-download"]
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("[{step: 1}]")
    not_live = tmp_path / "not_live.json"
    not_live.write_text(json.dumps([{"step": 1, "nesterov": True}]))
    for args, words in [
        (["--scheduler", "wiggly"], "unknown scheduler 'wiggly'"),
        (["--scheduler", "step", "--sched-param", "gamma=2"], "gamma: 2 is out of range"),
        (["--sched-param", "eta_min=0"], "constant has no parameter 'eta_min'"),
        (["--changes", tmp_path / "missing.json"], "cannot read change file"),
        (["--changes", bad_json], "is not valid JSON"),
        (["--changes", not_live], "'nesterov' cannot be changed while optimizer 'sgd' trains"),
    ]:
        code, out, err = cli(capsys, *base, *args)
        assert (code, out, err.count("\n")) == (2, "", 1), args
        assert words in err, err


def test_resume_refuses_another_schedule(capsys, tmp_path, tiny_root):
    path = tmp_path / "ck.pt"
    base = ["--data-dir", tiny_root, "--no-download"]
    code, _, _ = cli(capsys, *base, "--epochs", 1, "--scheduler", "step", "--save", path)
    assert code == 0
    for args, words in [
        (["--scheduler", "cosine"], "--scheduler cosine (the checkpoint has step) differs"),
        (["--sched-param", "gamma=0.5"], "--sched-param gamma=0.5 differs"),
    ]:
        code, out, err = cli(capsys, *base, "--resume", path, "--epochs", 2, *args)
        assert code == 2
        assert words in err, err
    code, out, _ = cli(capsys, *base, "--resume", path, "--epochs", 2, "--scheduler", "step")
    assert code == 0
    assert out.startswith("Epoch 2\n")


def test_list_plugins_shows_schedulers(capsys, tmp_path):
    code, out, _ = cli(capsys, "--list-plugins", "--plugin-dir", tmp_path)
    assert code == 0
    for name in ("constant", "step", "cosine", "warmup_cosine", "one_cycle"):
        assert f"scheduler:{name}" in out
