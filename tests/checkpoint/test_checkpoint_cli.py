"""fmnist-train --save / --resume / --init-weights, and hostile files on the command line."""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import pytest
import torch

from fmnist_gui import checkpoint as ckpt
from fmnist_gui.cli import main
from tests.support.plugin_fixtures import good_optimizer_source, write_plugin


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def from_epoch(out: str, epoch: int) -> str:
    return out[out.index(f"Epoch {epoch}\n") :]


@pytest.mark.parametrize(
    "options",
    [
        ["--seed", "0"],
        [
            "--seed",
            "0",
            "--shuffle",
            "--optimizer",
            "adam",
            "--opt-param",
            "betas=0.8,0.9",
            "--lr",
            "0.002",
        ],
    ],
    ids=["tutorial", "adam-shuffled"],
)
def test_save_then_resume_prints_the_same_epoch_2_lines(capsys, tmp_path, tiny_root, options):
    common = ["--data-dir", tiny_root, "--no-download", "--batch-size", 2, *options]
    path = tmp_path / "ck.pt"
    code, first, _ = cli(capsys, *common, "--epochs", 1, "--save", path)
    assert code == 0
    assert first.endswith("Done!\n")
    # --resume takes the settings from the checkpoint; repeating them is fine.
    code, resumed, err = cli(capsys, *common, "--resume", path, "--epochs", 2)
    assert code == 0, err
    code, straight, _ = cli(capsys, *common, "--epochs", 2)
    assert code == 0
    assert resumed.startswith("Epoch 2\n")
    assert resumed == from_epoch(straight, 2)
    assert "loss: " in resumed
    assert "[  200/  256]" in resumed
    if "--optimizer" not in options:  # without repeating the options, too (once: slow)
        code, again, _ = cli(capsys, "--data-dir", tiny_root, "--resume", path, "--epochs", 2)
        assert code == 0
        assert again == resumed


INTERRUPTING_LOSS = """
import os, signal
import torch
from fmnist_gui import LossSpec, hookimpl

def make():
    calls = [0]
    def loss(pred, y):
        calls[0] += 1
        if str(calls[0]) == os.environ.get("FMNIST_TEST_INTERRUPT_AT"):
            signal.raise_signal(signal.SIGINT)  # as if the user pressed Ctrl-C here
        return torch.nn.functional.cross_entropy(pred, y)
    return loss

@hookimpl
def fmnist_register_losses():
    return [LossSpec(name="ce_interruptible", label="CE", factory=make)]
"""


def test_ctrl_c_with_save_stops_at_a_batch_and_resumes_exactly(
    capsys, tmp_path, tiny_root, monkeypatch
):
    plugin_dir = tmp_path / "plugins"
    write_plugin(plugin_dir, "interruptible", textwrap.dedent(INTERRUPTING_LOSS))
    common = [
        "--data-dir",
        tiny_root,
        "--no-download",
        "--batch-size",
        2,
        "--seed",
        4,
        "--loss",
        "ce_interruptible",
        "--plugin-dir",
        plugin_dir,
        "--epochs",
        2,
    ]
    path = tmp_path / "ck.pt"
    # 128 training + 64 test batches per epoch: call 214 is epoch 2's batch 21.
    monkeypatch.setenv("FMNIST_TEST_INTERRUPT_AT", "214")
    handler = signal.getsignal(signal.SIGINT)
    code, _, err = cli(capsys, *common, "--save", path)
    assert code == 130
    assert "stopping at the next batch" in err
    assert f"continue with --resume {path}" in err
    assert signal.getsignal(signal.SIGINT) is handler  # restored
    position = ckpt.read_checkpoint(path)["position"]
    assert (position["epochs_done"], position["batch_in_epoch"]) == (1, 22)

    monkeypatch.delenv("FMNIST_TEST_INTERRUPT_AT")
    code, resumed, _ = cli(capsys, *common, "--resume", path)
    assert code == 0
    code, straight, _ = cli(capsys, *common)
    assert code == 0
    # The interrupted epoch's remaining lines, then the same test results and "Done!".
    tail = straight[straight.index("Test Error", straight.index("Epoch 2")) :]
    assert resumed.startswith("Epoch 2\n")
    assert resumed.endswith(tail)
    assert "[  200/  256]" in resumed
    assert "[    0/  256]" not in resumed


class CreatesFile:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


def hostile_files(tmp_path: Path, good: Path) -> dict[str, tuple[Path, str]]:
    files = {}

    def add(name, content, words):
        path = tmp_path / f"{name}.pt"
        path.write_bytes(content)
        files[name] = (path, words)

    add("empty", b"", "is empty")
    add("truncated", good.read_bytes()[:5000], "truncated or damaged")
    add("random", b"\x00\x13\x37 not a checkpoint " * 200, "not a PyTorch file")
    add("png", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "is a PNG image")
    evil = tmp_path / "evil.pt"
    torch.save({"x": CreatesFile(tmp_path / "pwned")}, evil)
    files["code"] = (evil, "could run code")
    obj = torch.load(good, weights_only=True)
    obj["format_version"] = 7
    torch.save(obj, tmp_path / "newer.pt")
    files["newer"] = (tmp_path / "newer.pt", "newer fmnist-gui")
    obj["format_version"] = 1
    obj["model"]["linear_relu_stack.2.weight"] = torch.zeros(512, 256)
    torch.save(obj, tmp_path / "arch.pt")
    files["architecture"] = (tmp_path / "arch.pt", "different network")
    huge = tmp_path / "huge.pt"
    with open(huge, "wb") as f:
        f.truncate(ckpt.MAX_CHECKPOINT_BYTES + 1)
    files["over cap"] = (huge, "over the 256 MiB limit")
    return files


def test_hostile_files_exit_2_with_one_line(capsys, tmp_path, tiny_root):
    good = tmp_path / "good.pt"
    code, _, _ = cli(capsys, "--data-dir", tiny_root, "--epochs", 1, "--save", good)
    assert code == 0
    for name, (path, words) in hostile_files(tmp_path, good).items():
        for option in ("--resume", "--init-weights"):
            code, out, err = cli(capsys, "--data-dir", tiny_root, "--epochs", 3, option, path)
            assert code == 2, (name, option)
            assert out == "", name
            assert err.count("\n") == 1, name
            assert "Traceback" not in err, name
            assert err.startswith(f"fmnist-train: error: {path}: "), err
            assert words in err, err
    assert not (tmp_path / "pwned").exists()


def test_missing_plugin_on_resume_names_it_and_points_to_init_weights(capsys, tmp_path, tiny_root):
    plugin_dir = tmp_path / "plugins"
    write_plugin(plugin_dir, "fmnist_adagrad", good_optimizer_source("my_adagrad"))
    path = tmp_path / "ck.pt"
    code, _, _ = cli(
        capsys,
        "--data-dir",
        tiny_root,
        "--epochs",
        1,
        "--plugin-dir",
        plugin_dir,
        "--optimizer",
        "my_adagrad",
        "--save",
        path,
    )
    assert code == 0
    (tmp_path / "empty").mkdir()  # --plugin-dir must name an existing folder
    code, out, err = cli(
        capsys,
        "--data-dir",
        tiny_root,
        "--epochs",
        2,
        "--resume",
        path,
        "--plugin-dir",
        tmp_path / "empty",
    )
    assert code == 2
    assert err.count("\n") == 1
    assert "optimizer 'my_adagrad' from plugin 'fmnist_adagrad' 2.5" in err
    assert "not installed" in err
    assert "load only its model weights" in err
    # The way out: start a new training from its weights.
    code, out, err = cli(
        capsys,
        "--data-dir",
        tiny_root,
        "--epochs",
        1,
        "--init-weights",
        path,
        "--plugin-dir",
        tmp_path / "empty",
    )
    assert code == 0, err
    assert out.endswith("Done!\n")


def test_resume_refuses_contradicting_settings_and_a_smaller_total(capsys, tmp_path, tiny_root):
    path = tmp_path / "ck.pt"
    base = ["--data-dir", tiny_root, "--no-download"]
    code, _, _ = cli(capsys, *base, "--epochs", 2, "--lr", 0.01, "--save", path)
    assert code == 0
    for args, words in [
        (["--lr", 0.1], "--lr 0.1 (the checkpoint has 0.01) differs from the checkpoint"),
        (["--optimizer", "adam"], "--optimizer adam (the checkpoint has sgd) differs"),
        (["--opt-param", "momentum=0.9"], "--opt-param momentum=0.9 differs"),
        (["--shuffle"], "--shuffle True (the checkpoint has False) differs"),
        (
            ["--epochs", 2],
            "already holds 2 finished epochs; --epochs is the total, so ask "
            "for more: --epochs 3 or more",
        ),
        (["--epochs", 3, "--init-weights", path], "--resume and --init-weights exclude"),
    ]:
        code, out, err = cli(capsys, *base, "--resume", path, *args)
        assert code == 2, args
        assert out == "", args
        assert err.count("\n") == 1, args
        assert words in err, err
    code, out, _ = cli(
        capsys, *base, "--resume", path, "--epochs", 3, "--lr", 0.01, "--opt-param", "momentum=0"
    )
    assert code == 0
    assert out.startswith("Epoch 3\n")


def test_save_problems_are_caught_before_training(capsys, tmp_path, tiny_root):
    code, out, err = cli(capsys, "--data-dir", tiny_root, "--save", tmp_path)
    assert code == 2
    assert out == ""
    assert "is a folder; give a file name" in err
    code, out, err = cli(capsys, "--data-dir", tiny_root, "--save", tmp_path / "no" / "ck.pt")
    assert code == 2
    assert out == ""
    assert "does not exist" in err


def test_init_weights_starts_from_the_tutorials_weights_file(
    capsys, tmp_path, tiny_root, tiny_data
):
    from tests.support import tutorial_reference as tut

    torch.manual_seed(123)
    model = tut.NeuralNetwork()
    path = tmp_path / "model_weights.pth"
    torch.save(model.state_dict(), path)
    X = tiny_data.train.images[:64].unsqueeze(1).float() / 255
    expected = torch.nn.functional.cross_entropy(model(X), tiny_data.train.labels[:64]).item()
    code, out, err = cli(
        capsys, "--data-dir", tiny_root, "--epochs", 1, "--seed", 0, "--init-weights", path
    )
    assert code == 0, err
    assert out.splitlines()[2] == f"loss: {expected:>7f}  [    0/  256]"
