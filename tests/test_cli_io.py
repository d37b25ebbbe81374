"""fmnist-train's output files: checked before training, and a failing one loses nothing.

Real files, folders and devices; a failed write is one line on stderr and exit 2.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from fmnist_gui import checkpoint as ckpt
from tests.support.plugin_fixtures import write_plugin


def train(tiny_root, *args) -> list[str]:
    return ["--data-dir", str(tiny_root), "--no-download", "--epochs", "2", "--seed", "1", *args]


def cannot_create_in(folder: Path) -> bool:
    try:
        fd, probe = tempfile.mkstemp(dir=folder)
    except OSError:
        return folder.is_dir()
    os.close(fd)
    os.unlink(probe)
    return False


def one_line_exit_2(capsys, code: int) -> str:
    out, err = capsys.readouterr()
    assert code == 2, err
    assert err.count("\n") == 1, err
    assert err.startswith("fmnist-train: error: "), err
    assert "Traceback" not in err
    return err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (ENOSPC on write)")
def test_a_full_disk_for_metrics_is_one_line_and_the_checkpoint_is_saved(
    tiny_root, tmp_path, capsys
):
    from fmnist_gui.cli import main

    save = tmp_path / "ck.pt"
    code = main(train(tiny_root, "--metrics-json", "/dev/full", "--save", str(save)))
    out, err = capsys.readouterr()
    assert code == 2, err
    assert (
        err
        == "fmnist-train: error: cannot write --metrics-json /dev/full: No space left on device\n"
    )
    assert "Epoch 1" in out
    assert "Epoch 2" not in out
    assert "Done!" not in out
    # The epoch that could not be recorded is in the checkpoint: nothing is lost.
    saved = ckpt.read_checkpoint(save)
    assert saved["position"]["epochs_done"] == 1


@pytest.mark.parametrize("option", ["--save", "--metrics-json"])
def test_output_targets_are_checked_before_training(tiny_root, tmp_path, capsys, option):
    from fmnist_gui.cli import main

    folder = tmp_path / "a folder"
    folder.mkdir()
    cases = [
        (folder, f"{option} {folder}: is a folder; give a file name"),
        (
            tmp_path / "missing" / "x.out",
            f"{option} {tmp_path / 'missing' / 'x.out'}: the folder {tmp_path / 'missing'} "
            "does not exist",
        ),
    ]
    if cannot_create_in(Path("/sys")):  # refused to everyone, root included
        cases.append((Path("/sys/x.out"), f"{option} /sys/x.out: cannot write in /sys: "))
    for path, words in cases:
        err = one_line_exit_2(capsys, main(train(tiny_root, option, str(path))))
        assert words in err, err
    assert sorted(os.listdir(folder)) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_folder_is_refused_before_training(tiny_root, tmp_path, capsys):
    from fmnist_gui.cli import main

    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        for option in ("--save", "--metrics-json"):
            err = one_line_exit_2(capsys, main(train(tiny_root, option, str(folder / "x"))))
            assert f"{option} {folder / 'x'}: cannot write in {folder}: Permission denied" in err
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["--opt-param", "momentum=0.5", "--opt-param", "momentum=0.6"],
            "--opt-param: 'momentum' is given more than once "
            "(--opt-param momentum=0.5 --opt-param momentum=0.6); give it once",
        ),
        (
            [
                "--opt-param",
                "momentum=0.5",
                "--opt-param",
                "dampening=0",
                "--opt-param",
                "momentum =0.5",
            ],
            "--opt-param: 'momentum' is given more than once",
        ),
        (
            ["--loss-param", "label_smoothing=0.1", "--loss-param", "label_smoothing=0.2"],
            "--loss-param: 'label_smoothing' is given more than once",
        ),
    ],
)
def test_a_parameter_given_twice_is_refused(tiny_root, capsys, args, words):
    from fmnist_gui.cli import main

    err = one_line_exit_2(capsys, main(train(tiny_root, *args)))
    assert words in err, err


# Hangs up the terminal that --metrics-json writes to, at the first training step
# (not in the self-test, which trains its own small model at another rate).
HANG_UP = """
import os
import torch
from fmnist_gui import OptimizerSpec, hookimpl

class HangUp(torch.optim.SGD):
    def step(self, closure=None):
        if self.param_groups[0]["lr"] == 0.0123 and "FMNIST_TEST_HANG_UP_FD" in os.environ:
            os.close(int(os.environ.pop("FMNIST_TEST_HANG_UP_FD")))
        return super().step(closure)

@hookimpl
def fmnist_register_optimizers():
    return [OptimizerSpec("hang_up", "Hang up", lambda params, lr: HangUp(params, lr=lr))]
"""


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_an_io_error_on_metrics_is_one_line_and_the_checkpoint_is_saved(
    tiny_root, tmp_path, capsys, monkeypatch
):
    from fmnist_gui.cli import main

    # A terminal whose other side has gone: writing to it fails with EIO, for real.
    controller, terminal = os.openpty()
    name = os.ttyname(terminal)
    os.close(terminal)
    write_plugin(tmp_path / "plugins", "hang_up", HANG_UP)
    monkeypatch.setenv("FMNIST_TEST_HANG_UP_FD", str(controller))
    save = tmp_path / "ck.pt"
    args = ["--plugin-dir", str(tmp_path / "plugins"), "--optimizer", "hang_up", "--lr", "0.0123"]
    try:
        code = main(train(tiny_root, *args, "--metrics-json", name, "--save", str(save)))
    finally:
        if "FMNIST_TEST_HANG_UP_FD" in os.environ:  # the step never ran: close it here
            os.close(controller)
    out, err = capsys.readouterr()
    assert code == 2, err
    assert err == f"fmnist-train: error: cannot write --metrics-json {name}: Input/output error\n"
    assert "Epoch 1" in out
    assert "Done!" not in out
    assert ckpt.read_checkpoint(save)["position"]["epochs_done"] == 1
