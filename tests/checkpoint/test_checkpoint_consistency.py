"""Checkpoints whose contents contradict themselves, files that are not files, and leftovers.

Each member is a real checkpoint edited in one place and saved raw with
``torch.save`` (as a damaged or hostile file would be), then loaded through
the same functions the command line and the app use.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fmnist_gui import checkpoint as ckpt
from fmnist_gui.system import fileio
from tests.checkpoint.test_checkpoint import rewrite, trained


@pytest.fixture
def sgd_saved(tmp_path, tiny_data, plugins):
    """An SGD-with-momentum checkpoint mid-epoch: it has a momentum buffer per parameter."""
    trainer = trained(tiny_data, plugins, optimizer="sgd", optimizer_params={"momentum": 0.9})
    path = tmp_path / "sgd.pt"
    ckpt.save_checkpoint(path, trainer.state_dict())
    return path


def refusal(path: Path, load=ckpt.read_checkpoint) -> str:
    with pytest.raises(ckpt.CheckpointError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message  # names the file
    return message


# ----- non-finite weights ---------------------------------------------------------------
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_weights_are_refused_in_checkpoints_and_weights_files(sgd_saved, bad):
    def spoil(o):
        o["model"]["linear_relu_stack.2.weight"][3, 7] = bad

    edited = rewrite(sgd_saved, spoil)
    for load in (ckpt.read_checkpoint, ckpt.load_weights):
        message = refusal(edited, load)
        assert "weight linear_relu_stack.2.weight holds 1 NaN or infinite value" in message

    weights = edited.with_name("model_weights.pth")  # the tutorial's own format
    model = torch.load(sgd_saved, weights_only=True)["model"]
    model["linear_relu_stack.4.bias"][:] = bad
    torch.save(model, weights)
    message = refusal(weights, ckpt.load_weights)
    assert "weight linear_relu_stack.4.bias holds 10 NaN or infinite values" in message


def test_non_finite_weights_are_never_saved(tmp_path, tiny_data, plugins):
    trainer = trained(tiny_data, plugins)
    state = trainer.state_dict()
    state["model"]["linear_relu_stack.0.bias"][0] = math.nan
    for save in (
        lambda p: ckpt.save_checkpoint(p, state),
        lambda p: ckpt.export_weights(p, state["model"]),
    ):
        path = tmp_path / "out.pt"
        # Training states are refused by the divergence rule, weights files by their check.
        with pytest.raises(
            ckpt.CheckpointError,
            match=r"linear_relu_stack\.0\.bias (holds 1 NaN|is not a finite number)",
        ):
            save(path)
        assert not path.exists()


# ----- optimizer settings that contradict the saved ones ---------------------------------
@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("lr", math.nan, "'optimizer.state_dict.param_groups[0].lr' is nan, not a finite number"),
        ("lr", math.inf, "'optimizer.state_dict.param_groups[0].lr' is inf, not a finite number"),
        (
            "lr",
            -5.0,
            "'optimizer.state_dict.param_groups[0].lr' is -5.0, "
            "but the checkpoint's settings say 0.01",
        ),
        (
            "momentum",
            0.5,
            "'optimizer.state_dict.param_groups[0].momentum' is 0.5, "
            "but the checkpoint's settings say 0.9",
        ),
        (
            "weight_decay",
            math.nan,
            "'optimizer.state_dict.param_groups[0].weight_decay' is nan, not a finite number",
        ),
    ],
)
def test_optimizer_settings_that_differ_from_the_config_are_refused(sgd_saved, key, value, words):
    def spoil(o):
        o["optimizer"]["state_dict"]["param_groups"][0][key] = value

    message = refusal(rewrite(sgd_saved, spoil))
    assert "holds inconsistent contents" in message
    assert words in message


def test_adam_betas_are_compared_as_saved(saved_adam):
    ckpt.read_checkpoint(saved_adam)  # tuple in the optimizer, list in the settings: equal

    def spoil(o):
        o["optimizer"]["state_dict"]["param_groups"][0]["betas"] = (0.9, math.nan)

    message = refusal(rewrite(saved_adam, spoil))
    assert "'optimizer.state_dict.param_groups[0].betas' is [0.9, nan]" in message


@pytest.fixture
def saved_adam(tmp_path, tiny_data, plugins):
    trainer = trained(tiny_data, plugins, optimizer="adam")
    path = tmp_path / "adam.pt"
    ckpt.save_checkpoint(path, trainer.state_dict())
    return path


# ----- optimizer state that does not fit the network -------------------------------------
@pytest.mark.parametrize(
    ("buffer", "words"),
    [
        (torch.zeros(784, 512), "is 784x512, but parameter 0 of the network is 512x784"),
        (torch.zeros(512 * 784), "is 401408, but parameter 0 of the network is 512x784"),
        (torch.zeros(10, 10), "is 10x10, but parameter 0 of the network is 512x784"),
        (torch.full((512, 784), math.nan), "holds NaN or infinite values"),
    ],
)
def test_momentum_buffer_that_does_not_fit_its_parameter_is_refused(sgd_saved, buffer, words):
    def spoil(o):
        o["optimizer"]["state_dict"]["state"][0]["momentum_buffer"] = buffer

    message = refusal(rewrite(sgd_saved, spoil))
    assert "'optimizer.state_dict.state[0].momentum_buffer'" in message
    assert words in message


def test_adam_state_of_the_wrong_parameter_and_its_step_count(saved_adam):
    ckpt.read_checkpoint(saved_adam)  # scalar step counters are not buffers: accepted

    def swap(o):
        state = o["optimizer"]["state_dict"]["state"]
        state[1]["exp_avg"] = state[3]["exp_avg"]  # 512 values for a 512-bias: fits
        state[5]["exp_avg_sq"] = state[1]["exp_avg_sq"]  # 512 values for the 10-bias

    message = refusal(rewrite(saved_adam, swap))
    assert "'optimizer.state_dict.state[5].exp_avg_sq' is 512" in message

    def unknown_parameter(o):
        o["optimizer"]["state_dict"]["state"][6] = {"step": torch.tensor(3.0)}

    message = refusal(rewrite(saved_adam, unknown_parameter))
    assert "'optimizer.state_dict.state[6]'" in message


def test_resume_with_a_misfit_buffer_blames_the_file_not_the_plugin(sgd_saved, tiny_root):
    def spoil(o):
        o["optimizer"]["state_dict"]["state"][2]["momentum_buffer"] = torch.zeros(512, 511)

    edited = rewrite(sgd_saved, spoil)
    result = subprocess.run(
        [sys.executable, "-m", "fmnist_gui.cli", "--data-dir", str(tiny_root), "--no-download"]
        + ["--resume", str(edited), "--epochs", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert f"{edited}: holds inconsistent contents" in result.stderr
    assert "'optimizer.state_dict.state[2].momentum_buffer' is 512x511" in result.stderr
    assert "plugin" not in result.stderr


# ----- things that are not regular files --------------------------------------------------
LOAD_A_FIFO = """
import sys
from fmnist_gui import checkpoint as ckpt
try:
    ckpt.read_checkpoint(sys.argv[1])
except ckpt.CheckpointError as exc:
    print(exc)
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_not_a_regular_file_and_is_never_opened(tmp_path):
    fifo = tmp_path / "ck.pt"
    os.mkfifo(fifo)
    # A separate process: opening a FIFO with no writer would hang the test, not fail it.
    result = subprocess.run(
        [sys.executable, "-c", LOAD_A_FIFO, str(fifo)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"{fifo}: is not a regular file (it is a named pipe (FIFO)); choose a .pt file"
    )


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs Unix sockets")
def test_a_socket_or_device_is_not_a_regular_file(tmp_path):
    where = tmp_path / "s.pt"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(where))
        assert stat.S_ISSOCK(where.stat().st_mode)
        for load in (ckpt.read_checkpoint, ckpt.load_weights):
            assert "is not a regular file (it is a socket)" in refusal(where, load)
    finally:
        server.close()
    if os.path.exists(os.devnull) and os.name == "posix":
        message = refusal(Path(os.devnull))
        assert "is not a regular file (it is a character device)" in message


# ----- temp files left by killed saves -----------------------------------------------------
# A save that writes part of its temp file, then is killed while still writing.
KILLED_MID_SAVE = """
import os, sys, time
from pathlib import Path
from fmnist_gui.system.fileio import write_atomically

def write(out):
    out.write(b"x" * 100_000)
    out.flush()
    print("writing", flush=True)
    time.sleep(600)  # killed here, inside the save

write_atomically(Path(sys.argv[1]), write)
"""


def killed_save(target: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_MID_SAVE, str(target)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "writing\n"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
        child.stdout.close()


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_the_next_save_removes_what_killed_saves_left(tmp_path, tiny_data, plugins):
    folder = tmp_path / "runs"
    folder.mkdir()
    target = folder / "ck.pt"
    killed_save(target)
    (first,) = folder.iterdir()
    assert first.name.startswith(".ck.pt.")
    assert first.name.endswith(".part")
    # Another file's save in the same folder removes it, then is killed too.
    killed_save(folder / "other.pt")
    (second,) = folder.iterdir()
    assert second.name.startswith(".other.pt.")
    assert second.name.endswith(".part")

    # Not ours: a user's file, a live writer's temp file (this process), a recent
    # temp file without a pid. All kept.
    keep = [
        folder / "notes.part",
        folder / f".ck.pt.{os.getpid()}.abcd1234.part",
        folder / ".ck.pt.abcd1234.part",
        folder / ".ck.pt.1.abcd12345.part",  # not mkstemp's 8 random characters
    ]
    for path in keep:
        path.write_bytes(b"keep")
    old = folder / ".ck.pt.zyxw9876.part"  # from before pids were in the name, long ago
    old.write_bytes(b"old")
    past = time.time() - fileio.STALE_TEMP_SECONDS - 60
    os.utime(old, (past, past))

    ckpt.save_checkpoint(target, trained(tiny_data, plugins).state_dict())
    assert sorted(folder.iterdir()) == sorted([target, *keep])
    ckpt.read_checkpoint(target)
