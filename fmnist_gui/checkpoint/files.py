"""Checkpoint files: save and load a training so that it continues bit for bit.

No Qt here; the CLI and the desktop app both use this module.

A checkpoint is one file written by ``torch.save`` holding a dict of tensors
and Python primitives only (its shape: ``schema.CheckpointFile``). It is
always read with ``torch.load(path, weights_only=True)`` and no fallback: a
file holding anything else (a pickle that could run code) is refused before
any of it runs, and a file over ``MAX_CHECKPOINT_BYTES`` is not read at all.

Every save goes through ``write_atomically`` (a temp file in the same folder,
fsync, ``os.replace``) and is read back in memory before it replaces the old
file, so a checkpoint that could not be loaded is never written. Every
problem is a ``CheckpointError`` whose message names the file, the reason and
the fix.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fmnist_gui import __version__
from fmnist_gui.checkpoint.archive import ArchiveError, verify_archive
from fmnist_gui.checkpoint.schema import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    CheckpointFile,
    check_checkpoint,
    check_model_state,
    check_version,
    looks_like_weights,
)
from fmnist_gui.errors import FmnistError
from fmnist_gui.plugins.host import PluginHost
from fmnist_gui.system.fileio import write_atomically
from fmnist_gui.training.data import FashionMNISTData
from fmnist_gui.training.sentinel import nonfinite_fields
from fmnist_gui.training.state import TrainingState
from fmnist_gui.training.trainer import Trainer

# Checked before torch.load reads a byte: an Adam checkpoint is about 8 MB.
MAX_CHECKPOINT_BYTES = 256 * 1024 * 1024
SUFFIX = ".pt"

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"
_KNOWN_MAGICS = {
    b"\x89PNG\r\n\x1a\n": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
}


class MissingPluginError(CheckpointError):
    """The checkpoint names an optimizer or loss that no installed plugin provides.

    The model's weights can still be loaded with ``load_weights(path)``.
    """

    def __init__(self, path: Path | str, kind: str, name: str, plugin: str, version: str) -> None:
        self.kind, self.name, self.plugin, self.version = kind, name, plugin, version
        made_by = f"plugin {plugin!r}" + (f" {version}" if version else "") if plugin else ""
        super().__init__(
            path,
            f"it was trained with the {kind} {name!r}"
            + (f" from {made_by}" if made_by else "")
            + ", which is not installed here",
            "install that plugin to continue this training, or load only its model weights",
        )


# ----- saving ------------------------------------------------------------------------
def save_checkpoint(
    path: Path | str, state: TrainingState, *, extra: Mapping[str, Any] | None = None
) -> int:
    """Write ``state`` (from ``Trainer.state_dict()``) to ``path`` atomically.

    ``extra`` holds app-level plain data (e.g. the run list) restored on open.
    Returns the number of bytes written. On any error the previous file at
    ``path`` is left untouched and a ``CheckpointError`` says why.
    """
    path = Path(path)
    bad = nonfinite_fields(state)
    if bad is not None:
        # A diverged model must never replace the last good file (or autosave).
        raise CheckpointError(
            path,
            f"cannot be saved: its {bad} is not a finite number (the training diverged)",
            "nothing was written; the previous file is unchanged",
        )
    payload: CheckpointFile = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "app_version": __version__,
        "torch_version": str(torch.__version__),
        "saved_at": time.time(),
        "extra": dict(extra or {}),
        **state,
    }
    data = _serialize(path, payload)
    # Refuse to write what could not be read back: e.g. an optimizer plugin
    # keeping a custom object in its state would otherwise make a dead file.
    try:
        check_checkpoint(path, _torch_load(io.BytesIO(data), "cpu"))
    except CheckpointError as exc:
        raise CheckpointError(
            path,
            f"cannot be saved: the snapshot would not load back ({exc.reason})",
            "nothing was written",
        ) from None
    except Exception as exc:  # noqa: BLE001 - any failure to read back means: do not write
        raise CheckpointError(
            path,
            f"cannot be saved: the snapshot would not load back ({_load_failure_reason(exc)})",
            "nothing was written",
        ) from None
    _write_bytes(path, data)
    return len(data)


def export_weights(path: Path | str, model_state: Mapping[str, torch.Tensor]) -> int:
    """Write the tutorial's own format: ``torch.save(model.state_dict(), path)``.

    The tutorial's ``model.load_state_dict(torch.load(path, weights_only=True))``
    loads it. Atomic like a checkpoint. Returns the number of bytes written.
    """
    path = Path(path)
    state = {k: v.detach().to("cpu", copy=True) for k, v in model_state.items()}
    check_model_state(path, state)
    data = _serialize(path, state)
    _write_bytes(path, data)
    return len(data)


def _serialize(path: Path, obj: Any) -> bytes:
    buffer = io.BytesIO()
    try:
        torch.save(obj, buffer)
    except Exception as exc:  # noqa: BLE001 - a plugin put something unpicklable in its state
        raise CheckpointError(
            path, f"cannot be saved: {type(exc).__name__}: {exc}", "nothing was written"
        ) from None
    return buffer.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    if path.is_dir():
        raise CheckpointError(path, "is a folder", "choose a file name inside it")
    try:
        write_atomically(path, lambda out: out.write(data))
    except OSError as exc:
        raise CheckpointError(
            path,
            f"cannot be saved: {_os_reason(exc, path)}",
            _os_fix(exc) + "; any previous file there is unchanged",
        ) from None


def _os_reason(exc: OSError, path: Path) -> str:
    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    if exc.errno == errno.EDQUOT:
        return "the disk quota is used up"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to write in {path.parent}"
    if exc.errno == errno.ENOENT:
        return f"the folder {path.parent} does not exist"
    if exc.errno == errno.EISDIR:
        return "it is a folder"
    return exc.strerror or str(exc)


def _os_fix(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some space or choose another disk"
    if exc.errno == errno.EISDIR:
        return "choose a file name"
    return "choose another folder"


# ----- loading -----------------------------------------------------------------------
def read_checkpoint(
    path: Path | str,
    *,
    map_location: str | torch.device = "cpu",
    max_bytes: int = MAX_CHECKPOINT_BYTES,
) -> CheckpointFile:
    """Load and check a checkpoint file, or raise ``CheckpointError``.

    The file's size is checked before it is read; ``torch.load`` always runs
    with ``weights_only=True``. The result has passed ``check_checkpoint``.
    """
    path = Path(path)
    obj = _load_safely(path, map_location, max_bytes)
    if isinstance(obj, Mapping) and obj.get("format") != FORMAT and looks_like_weights(obj):
        raise CheckpointError(
            path,
            "holds only model weights (the tutorial's format), not a training checkpoint",
            "use Import weights… (fmnist-train --init-weights) to start from these weights",
        )
    check_checkpoint(path, obj)
    return obj  # checked: it is a CheckpointFile


def load_weights(
    path: Path | str,
    *,
    map_location: str | torch.device = "cpu",
    max_bytes: int = MAX_CHECKPOINT_BYTES,
) -> dict[str, torch.Tensor]:
    """The model weights from a tutorial-format file or from a full checkpoint.

    This needs no plugin: it is how a checkpoint whose optimizer or loss is
    not installed can still be used. Shapes are checked against the network.
    """
    path = Path(path)
    obj = _load_safely(path, map_location, max_bytes)
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        check_version(path, obj)
        obj = obj.get("model")
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            path,
            f"holds a {type(obj).__name__}, not model weights",
            "choose a file saved with torch.save(model.state_dict(), path)",
        )
    state = dict(obj)
    check_model_state(path, state)
    return state


def trainer_from_checkpoint(
    checkpoint: CheckpointFile,
    data: FashionMNISTData,
    plugins: PluginHost,
    *,
    path: Path | str = "checkpoint",
    epochs: int | None = None,
) -> Trainer:
    """A new ``Trainer`` continuing ``checkpoint`` (from ``read_checkpoint``).

    Raises ``MissingPluginError`` when its optimizer or loss is not installed
    and ``CheckpointError`` for anything else that does not fit.
    """
    wanted = (
        ("optimizer", checkpoint["optimizer"], plugins.optimizers),
        ("loss", checkpoint["loss"], plugins.losses),
    )
    for kind, entry, table in wanted:
        if entry["name"] not in table:
            version = str(checkpoint.get("plugins", {}).get(entry["plugin"], ""))
            raise MissingPluginError(path, kind, entry["name"], entry["plugin"], version)
    try:
        return Trainer.from_state_dict(checkpoint, data, plugins, epochs=epochs)
    except FmnistError as exc:
        raise CheckpointError(
            path, f"cannot continue its training: {exc}", "load only its model weights instead"
        ) from None


def load_trainer(
    path: Path | str,
    data: FashionMNISTData,
    plugins: PluginHost,
    *,
    epochs: int | None = None,
    max_bytes: int = MAX_CHECKPOINT_BYTES,
) -> Trainer:
    """``read_checkpoint`` then ``trainer_from_checkpoint``: a fresh, ready Trainer."""
    checkpoint = read_checkpoint(path, max_bytes=max_bytes)
    return trainer_from_checkpoint(checkpoint, data, plugins, path=path, epochs=epochs)


def _load_safely(path: Path, map_location, max_bytes: int) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into a clear reason."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(path, "does not exist", "check the file name") from None
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise CheckpointError(path, "is a folder, not a checkpoint file", "choose a file")
    if not stat.S_ISREG(info.st_mode):
        # Decided before opening it: opening a FIFO would wait for a writer forever.
        raise CheckpointError(
            path, f"is not a regular file (it is {_file_kind(info.st_mode)})", "choose a .pt file"
        )
    size = info.st_size
    if size == 0:
        raise CheckpointError(
            path,
            "is empty (0 bytes)",
            "it was probably cut off while being written; use another copy",
        )
    if size > max_bytes:
        raise CheckpointError(
            path,
            f"is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} MiB limit "
            "for checkpoints (this app's are about 10 MiB)",
            "it is not one of this app's files",
        )
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read: {exc.strerror or exc}") from None
    for magic, what in _KNOWN_MAGICS.items():
        if head.startswith(magic):
            raise CheckpointError(path, f"is {what}, not a checkpoint", "choose a .pt file")
    if not (head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_PROTO)):
        raise CheckpointError(
            path,
            "is not a PyTorch file (unrecognised content)",
            "choose a checkpoint saved by this app or by torch.save",
        )
    if head.startswith(_ZIP_MAGIC):
        try:
            verify_archive(path, max_bytes)
        except ArchiveError as problem:
            raise CheckpointError(path, problem.reason, problem.fix) from None
    try:
        return _torch_load(path, map_location)
    except Exception as exc:  # noqa: BLE001 - hostile files raise anything; all are refused
        reason = _load_failure_reason(exc, archive=head.startswith(_ZIP_MAGIC))
        raise CheckpointError(path, reason) from None


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((what for test, what in kinds if test(mode)), "not a plain file")


def _torch_load(source, map_location) -> Any:
    with warnings.catch_warnings():
        # torch warns about pickle protocols; the failure itself is what we report.
        warnings.simplefilter("ignore")
        return torch.load(source, weights_only=True, map_location=map_location)


def _load_failure_reason(exc: BaseException, *, archive: bool = True) -> str:
    text = str(exc)
    if "Weights only load failed" in text or type(exc).__name__ == "UnpicklingError":
        found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"global[: ]+([\w.]+)", text)
        if found:
            return (
                f"refused: it holds the Python object {found.group(1)}, not only tensors "
                "and plain values; loading such a file could run code, so none of it was "
                "loaded"
            )
        return (
            "refused: it is not a plain tensor file (it could hold code), so none of it was loaded"
        )
    if archive or isinstance(exc, EOFError):
        # torch's zip reader fails in many ways (EOF, EINVAL, "central directory") on a cut file.
        return "is truncated or damaged (not a complete PyTorch archive); use another copy"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"cannot be read: {type(exc).__name__}" + (f": {first[:200]}" if first else "")


__all__ = [
    "MAX_CHECKPOINT_BYTES",
    "SUFFIX",
    "MissingPluginError",
    "export_weights",
    "load_trainer",
    "load_weights",
    "read_checkpoint",
    "save_checkpoint",
    "trainer_from_checkpoint",
]
