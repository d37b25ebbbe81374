"""Checkpoint files: save and load a training so that it continues bit for bit.

No Qt here; the CLI and the desktop app both use this module.

Format: one file written by ``torch.save`` holding a dict of tensors and
Python primitives only (see ``Trainer.state_dict()`` for the training part),
plus a header (``format``, ``format_version``, ``app_version``, ...). It is
always read with ``torch.load(path, weights_only=True)`` and no fallback: a
file holding anything else (a pickle that could run code) is refused before
any of it runs. RNG states are uint8 tensors, so no allowlist is needed.

Every save goes through ``write_atomically`` (a temp file in the same folder,
fsync, ``os.replace``) and is read back in memory before it replaces the old
file, so a checkpoint that could not be loaded is never written. Every
problem is a ``CheckpointError`` whose message names the file, the reason and
the fix.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import os
import re
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch

from fmnist_gui import __version__
from fmnist_gui.errors import FmnistError
from fmnist_gui.plugins.boundary import PluginFailure
from fmnist_gui.plugins.host import PluginHost, UnknownPluginError
from fmnist_gui.plugins.specs import ParamError
from fmnist_gui.system.fileio import write_atomically
from fmnist_gui.system.paths import user_data_dir
from fmnist_gui.training.config import ConfigError, TrainConfig
from fmnist_gui.training.data import FashionMNISTData
from fmnist_gui.training.model import NeuralNetwork
from fmnist_gui.training.trainer import IncompatibleState, Trainer

FORMAT = "fmnist-gui-checkpoint"
FORMAT_VERSION = 1
# Checked before torch.load reads a byte: an Adam checkpoint is about 8 MB.
MAX_CHECKPOINT_BYTES = 256 * 1024 * 1024
SUFFIX = ".pt"
FILE_FILTER = "Training checkpoints (*.pt *.pth);;All files (*)"
WEIGHTS_FILTER = "Model weights (*.pth *.pt);;All files (*)"

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"
_KNOWN_MAGICS = {
    b"\x89PNG\r\n\x1a\n": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
}


class CheckpointError(FmnistError):
    """A checkpoint that cannot be read or written; the message names file, reason and fix."""

    def __init__(self, path: Path | str, reason: str, fix: str = "") -> None:
        self.path = Path(path)
        self.reason = reason
        self.fix = fix
        super().__init__(f"{path}: {reason}" + (f"; {fix}" if fix else ""))


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
    path: Path | str, state: Mapping[str, Any], *, extra: Mapping[str, Any] | None = None
) -> int:
    """Write ``state`` (from ``Trainer.state_dict()``) to ``path`` atomically.

    ``extra`` holds app-level plain data (e.g. the run list) restored on open.
    Returns the number of bytes written. On any error the previous file at
    ``path`` is left untouched and a ``CheckpointError`` says why.
    """
    path = Path(path)
    payload = {
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
    except Exception as exc:
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
    except Exception as exc:  # a plugin put something unpicklable in its state
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
) -> dict[str, Any]:
    """Load and check a checkpoint file, or raise ``CheckpointError``.

    The file's size is checked before it is read; ``torch.load`` always runs
    with ``weights_only=True``. The result has passed ``check_checkpoint``.
    """
    path = Path(path)
    obj = _load_safely(path, map_location, max_bytes)
    if isinstance(obj, Mapping) and obj.get("format") != FORMAT and _looks_like_weights(obj):
        raise CheckpointError(
            path,
            "holds only model weights (the tutorial's format), not a training checkpoint",
            "use Import weights… (fmnist-train --init-weights) to start from these weights",
        )
    check_checkpoint(path, obj)
    return obj


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
        _check_version(path, obj)
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
    checkpoint: Mapping[str, Any],
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
    for kind, table in (("optimizer", plugins.optimizers), ("loss", plugins.losses)):
        entry = checkpoint[kind]
        if entry["name"] not in table:
            version = str(checkpoint.get("plugins", {}).get(entry["plugin"], ""))
            raise MissingPluginError(path, kind, entry["name"], entry["plugin"], version)
    try:
        return Trainer.from_state_dict(dict(checkpoint), data, plugins, epochs=epochs)
    except (ConfigError, ParamError, UnknownPluginError, PluginFailure, IncompatibleState) as exc:
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
        size = path.stat().st_size
    except FileNotFoundError:
        raise CheckpointError(path, "does not exist", "check the file name") from None
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read: {exc.strerror or exc}") from None
    if path.is_dir():
        raise CheckpointError(path, "is a folder, not a checkpoint file", "choose a file")
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
    try:
        return _torch_load(path, map_location)
    except Exception as exc:
        reason = _load_failure_reason(exc, archive=head.startswith(_ZIP_MAGIC))
        raise CheckpointError(path, reason) from None


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


# ----- checking ----------------------------------------------------------------------
_T = torch.Tensor
# Expected structure: a type, or a nested dict of them.
_SCHEMA: dict[str, Any] = {
    "format_version": int,
    "app_version": str,
    "model": dict,
    "optimizer": {"name": str, "plugin": str, "params": dict, "state_dict": dict},
    "loss": {"name": str, "plugin": str, "params": dict},
    "config": dict,
    "position": {
        "epochs_done": int,
        "batch_in_epoch": int,
        "global_step": int,
        "epoch_generator_state": _T,
        "epoch_loss_sum": float,
        "epoch_train_seconds": float,
        "seed": int,
    },
    "rng": {"torch_cpu": _T, "cuda": list, "shuffle": _T},
    "history": {"batch_losses": _T, "epochs": list},
    "data": {"train_size": int, "test_size": int},
    "torch_threads": int,
    "plugins": dict,
    "extra": dict,
}
_EPOCH_KEYS = (
    "epoch",
    "train_loss",
    "test_loss",
    "test_accuracy",
    "train_seconds",
    "test_seconds",
    "samples_per_second",
)


def check_checkpoint(path: Path | str, obj: Any) -> None:
    """Raise ``CheckpointError`` unless ``obj`` is a complete checkpoint this app can read."""
    path = Path(path)
    if not isinstance(obj, Mapping) or obj.get("format") != FORMAT:
        raise CheckpointError(
            path, "is not an fmnist-gui checkpoint", "choose a file saved by this app (File → Save)"
        )
    _check_version(path, obj)
    _check_schema(path, obj, _SCHEMA, "")
    for name in ("epoch_generator_state",):
        _check_uint8(path, obj["position"][name], f"position.{name}")
    _check_uint8(path, obj["rng"]["torch_cpu"], "rng.torch_cpu")
    _check_uint8(path, obj["rng"]["shuffle"], "rng.shuffle")
    for i, s in enumerate(obj["rng"]["cuda"]):
        _check_uint8(path, s, f"rng.cuda[{i}]")
    losses = obj["history"]["batch_losses"]
    if losses.dtype != torch.float64 or losses.dim() != 1:
        _damaged(path, "history.batch_losses", "a 1-D float64 tensor")
    for i, epoch in enumerate(obj["history"]["epochs"]):
        if not isinstance(epoch, Mapping) or any(not _is_number(epoch.get(k)) for k in _EPOCH_KEYS):
            _damaged(path, f"history.epochs[{i}]", "a dict of epoch metrics")
    position = obj["position"]
    for key in ("epochs_done", "batch_in_epoch", "global_step"):
        if position[key] < 0:
            _damaged(path, f"position.{key}", "a count of at least 0")
    if not 0 <= position["seed"] < 2**63:
        _damaged(path, "position.seed", "a seed from 0 to 2^63-1")
    if not 1 <= obj["torch_threads"] <= 4096:
        _damaged(path, "torch_threads", "a thread count")
    _check_config(path, obj["config"])
    check_model_state(path, obj["model"])


def _check_config(path: Path, config: Mapping[str, Any]) -> None:
    # Every setting must be there: a default filled in for a missing one
    # (batch 64, say) would silently break the exact resume.
    for f in dataclasses.fields(TrainConfig):
        if f.name not in config:
            _damaged(path, f"config.{f.name}", "present", missing=True)
    try:
        TrainConfig.from_dict(dict(config)).validate()
    except (ConfigError, TypeError, ValueError) as exc:
        _damaged(path, "config", f"a valid training config ({exc})")


def _check_version(path: Path, obj: Mapping[str, Any]) -> None:
    version = obj.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        _damaged(path, "format_version", "a whole number")
    if version > FORMAT_VERSION:
        app = obj.get("app_version", "?")
        raise CheckpointError(
            path,
            f"was written by a newer fmnist-gui ({app}, checkpoint format {version}); "
            f"this is {__version__}, which reads format {FORMAT_VERSION}",
            "update fmnist-gui to open it",
        )


def _check_schema(path: Path, obj: Mapping[str, Any], schema: dict, prefix: str) -> None:
    for key, expected in schema.items():
        name = f"{prefix}{key}"
        if key not in obj:
            _damaged(path, name, "present", missing=True)
        value = obj[key]
        if isinstance(expected, dict):
            if not isinstance(value, Mapping):
                _damaged(path, name, "a dict")
            _check_schema(path, value, expected, name + ".")
        elif expected is float:
            if not _is_number(value):
                _damaged(path, name, "a number")
        elif expected is int:
            if not isinstance(value, int) or isinstance(value, bool):
                _damaged(path, name, "a whole number")
        elif expected is dict:
            if not isinstance(value, Mapping):
                _damaged(path, name, "a dict")
        elif not isinstance(value, expected):
            _damaged(path, name, f"a {expected.__name__}")


def _check_uint8(path: Path, value: torch.Tensor, name: str) -> None:
    if value.dtype != torch.uint8 or value.dim() != 1:
        _damaged(path, name, "a random-generator state (1-D uint8 tensor)")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _damaged(path: Path, name: str, expected: str, *, missing: bool = False) -> NoReturn:
    what = f"'{name}' is missing" if missing else f"'{name}' is not {expected}"
    raise CheckpointError(path, f"is damaged or not from this app: {what}", "use another copy")


def model_shapes() -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """The network's parameter names, shapes and dtypes (built on the meta device,
    so no memory is used and torch's random generator is not touched)."""
    with torch.device("meta"):
        reference = NeuralNetwork()
    return {k: (tuple(v.shape), v.dtype) for k, v in reference.state_dict().items()}


def check_model_state(path: Path | str, state: Any) -> None:
    """Raise ``CheckpointError`` unless ``state`` fits ``NeuralNetwork`` exactly."""
    path = Path(path)
    if not isinstance(state, Mapping):
        raise CheckpointError(path, "holds no model weights", "choose another file")
    expected = model_shapes()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing[:4]) + ("…" if len(missing) > 4 else ""))
        if unexpected:
            parts.append(
                "unexpected "
                + ", ".join(map(str, unexpected[:4]))
                + ("…" if len(unexpected) > 4 else "")
            )
        raise CheckpointError(
            path,
            "holds weights of a different network (" + "; ".join(parts) + ")",
            "this app trains the tutorial's 784-512-512-10 NeuralNetwork",
        )
    for key, (shape, dtype) in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                path, f"weight {key} is a {type(value).__name__}, not a tensor", "use another copy"
            )
        if tuple(value.shape) != shape:
            raise CheckpointError(
                path,
                f"holds weights of a different network: {key} is "
                f"{_shape(value.shape)}, the tutorial's network needs {_shape(shape)}",
                "this app trains the tutorial's 784-512-512-10 NeuralNetwork",
            )
        if value.dtype != dtype:
            raise CheckpointError(
                path, f"weight {key} is {value.dtype}, not {dtype}", "export the weights in float32"
            )


def _shape(shape) -> str:
    return "x".join(str(n) for n in shape) or "a scalar"


def _looks_like_weights(obj: Mapping[str, Any]) -> bool:
    return (
        bool(obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
        and any(k in obj for k in model_shapes())
    )


# ----- autosave and crash recovery ----------------------------------------------------
AUTOSAVE_PREFIX = "session-"


@dataclass(frozen=True)
class Recoverable:
    """An autosave left behind by a session that did not end cleanly."""

    path: Path
    saved_at: float  # the file's modification time, seconds since the epoch
    pid: int


def autosave_dir() -> Path:
    """``user_data_dir()/autosave``: one file per running app session."""
    return user_data_dir() / "autosave"


def autosave_path(pid: int | None = None) -> Path:
    return autosave_dir() / f"{AUTOSAVE_PREFIX}{os.getpid() if pid is None else pid}{SUFFIX}"


def autosave(state: Mapping[str, Any], *, extra: Mapping[str, Any] | None = None) -> Path:
    """Save ``state`` as this session's autosave (atomically); return its path."""
    path = autosave_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, state, extra=extra)
    return path


def discard_autosave(path: Path | None = None) -> None:
    """Remove an autosave (this session's by default): its training is saved or dropped."""
    try:
        (path or autosave_path()).unlink()
    except FileNotFoundError:
        pass


def find_recoverable_autosaves() -> list[Recoverable]:
    """Autosaves of sessions that are no longer running, newest first.

    Also removes temp files that a killed save left behind in the folder.
    """
    folder = autosave_dir()
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    found: list[Recoverable] = []
    for entry in entries:
        pid = _session_pid(entry.name)
        if pid is None or pid == os.getpid() or _pid_alive(pid):
            continue
        if entry.name.endswith(".part"):
            try:
                entry.unlink()
            except OSError:
                pass
            continue
        try:
            found.append(Recoverable(entry, entry.stat().st_mtime, pid))
        except OSError:
            continue
    return sorted(found, key=lambda r: r.saved_at, reverse=True)


def _session_pid(name: str) -> int | None:
    # "session-123.pt" or its temp file ".session-123.pt.XXXX.part"
    found = re.fullmatch(rf"\.?{AUTOSAVE_PREFIX}(\d+)\{SUFFIX}(\..+\.part)?", name)
    return int(found.group(1)) if found else None


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":
        return False  # cannot tell cheaply; offering a recovery is the safe side
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_CHECKPOINT_BYTES",
    "CheckpointError",
    "MissingPluginError",
    "Recoverable",
    "autosave",
    "autosave_dir",
    "autosave_path",
    "check_checkpoint",
    "check_model_state",
    "discard_autosave",
    "export_weights",
    "find_recoverable_autosaves",
    "load_trainer",
    "load_weights",
    "read_checkpoint",
    "save_checkpoint",
    "trainer_from_checkpoint",
]
