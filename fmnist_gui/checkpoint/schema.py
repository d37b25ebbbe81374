"""What a checkpoint file holds, and the check that a loaded one really does.

The training part's shape is ``fmnist_gui.training.state.TrainingState``
(what ``Trainer.state_dict()`` builds); ``CheckpointFile`` adds the file's
header. ``check_checkpoint`` walks those definitions, so a field added there
is checked here with no second list to keep in step. What a type cannot say
(RNG states are 1-D uint8, counts are not negative, the config is valid, the
weights fit the network) is checked by hand after the walk.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn, TypedDict

import torch

from fmnist_gui import __version__
from fmnist_gui.errors import FmnistError
from fmnist_gui.training.config import ABSENT_MEANS_DEFAULT, ConfigError, TrainConfig
from fmnist_gui.training.events import EPOCH_FIELDS
from fmnist_gui.training.model import NeuralNetwork
from fmnist_gui.training.state import TrainingState

FORMAT = "fmnist-gui-checkpoint"
FORMAT_VERSION = 1


class _WrittenWhenSaved(TypedDict, total=False):
    # Written by every save, but not needed to continue a training: not required.
    torch_version: str
    saved_at: float  # time.time()


class CheckpointFile(TrainingState, _WrittenWhenSaved):
    """A checkpoint file's top-level dict: the header, then ``TrainingState``'s keys."""

    format: str  # always FORMAT
    format_version: int
    app_version: str
    extra: dict[str, Any]  # app-level plain data, e.g. the run list


class CheckpointError(FmnistError):
    """A checkpoint that cannot be read or written; the message names file, reason and fix."""

    def __init__(self, path: Path | str, reason: str, fix: str = "") -> None:
        self.path = Path(path)
        self.reason = reason
        self.fix = fix
        super().__init__(f"{path}: {reason}" + (f"; {fix}" if fix else ""))


def check_checkpoint(path: Path | str, obj: Any) -> None:
    """Raise ``CheckpointError`` unless ``obj`` is a complete checkpoint this app can read."""
    path = Path(path)
    if not isinstance(obj, Mapping) or obj.get("format") != FORMAT:
        raise CheckpointError(
            path, "is not an fmnist-gui checkpoint", "choose a file saved by this app (File → Save)"
        )
    check_version(path, obj)
    _check_shape(path, obj, CheckpointFile, "")

    position, rng = obj["position"], obj["rng"]
    _check_uint8(path, position["epoch_generator_state"], "position.epoch_generator_state")
    _check_uint8(path, rng["torch_cpu"], "rng.torch_cpu")
    _check_uint8(path, rng["shuffle"], "rng.shuffle")
    for i, s in enumerate(rng["cuda"]):
        _check_uint8(path, s, f"rng.cuda[{i}]")
    losses = obj["history"]["batch_losses"]
    if losses.dtype != torch.float64 or losses.dim() != 1:
        _damaged(path, "history.batch_losses", "a 1-D float64 tensor")
    for i, epoch in enumerate(obj["history"]["epochs"]):
        if not isinstance(epoch, Mapping) or any(
            not _is_number(epoch.get(k)) for k in EPOCH_FIELDS
        ):
            _damaged(path, f"history.epochs[{i}]", "a dict of epoch metrics")
    for key in ("epochs_done", "batch_in_epoch", "global_step"):
        if position[key] < 0:
            _damaged(path, f"position.{key}", "a count of at least 0")
    if not 0 <= position["seed"] < 2**63:
        _damaged(path, "position.seed", "a seed from 0 to 2^63-1")
    if not 1 <= obj["torch_threads"] <= 4096:
        _damaged(path, "torch_threads", "a thread count")
    _check_config(path, obj["config"])
    check_model_state(path, obj["model"])


def check_version(path: Path, obj: Mapping[str, Any]) -> None:
    """Raise ``CheckpointError`` unless this app reads ``obj``'s format version."""
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


def _check_shape(path: Path, obj: Mapping[str, Any], shape: type, prefix: str) -> None:
    """Check ``obj`` against the TypedDict ``shape``: keys present, values of their types."""
    hints = typing.get_type_hints(shape)
    required: frozenset[str] = getattr(shape, "__required_keys__", frozenset())
    for key, expected in hints.items():
        name = f"{prefix}{key}"
        if key not in obj:
            if key in required:
                _damaged(path, name, "present", missing=True)
            continue
        value = obj[key]
        if typing.is_typeddict(expected):
            if not isinstance(value, Mapping):
                _damaged(path, name, "a dict")
            _check_shape(path, value, expected, name + ".")
        elif not _is_a(value, expected):
            _damaged(path, name, _describe(expected))


def _is_a(value: Any, expected: Any) -> bool:
    container = typing.get_origin(expected) or expected
    if expected is float:
        return _is_number(value)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if container is dict:
        return isinstance(value, Mapping)
    return isinstance(value, container)


def _describe(expected: Any) -> str:
    container = typing.get_origin(expected) or expected
    if expected is float:
        return "a number"
    if expected is int:
        return "a whole number"
    return f"a {container.__name__}"


def _check_config(path: Path, config: Mapping[str, Any]) -> None:
    # Every setting must be there: a default filled in for a missing one
    # (batch 64, say) would silently break the exact resume.
    for f in dataclasses.fields(TrainConfig):
        if f.name not in config and not f.metadata.get(ABSENT_MEANS_DEFAULT):
            _damaged(path, f"config.{f.name}", "present", missing=True)
    try:
        TrainConfig.from_dict(dict(config)).validate()
    except (ConfigError, TypeError, ValueError) as exc:
        _damaged(path, "config", f"a valid training config ({exc})")


def _check_uint8(path: Path, value: torch.Tensor, name: str) -> None:
    if value.dtype != torch.uint8 or value.dim() != 1:
        _damaged(path, name, "a random-generator state (1-D uint8 tensor)")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _damaged(path: Path, name: str, expected: str, *, missing: bool = False) -> NoReturn:
    what = f"'{name}' is missing" if missing else f"'{name}' is not {expected}"
    raise CheckpointError(path, f"is damaged or not from this app: {what}", "use another copy")


# ----- model weights ------------------------------------------------------------------
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


def looks_like_weights(obj: Mapping[str, Any]) -> bool:
    """True for a plain ``model.state_dict()`` (the tutorial's format) of this network."""
    return (
        bool(obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
        and any(k in obj for k in model_shapes())
    )


def _shape(shape) -> str:
    return "x".join(str(n) for n in shape) or "a scalar"


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointError",
    "CheckpointFile",
    "check_checkpoint",
    "check_model_state",
    "check_version",
    "looks_like_weights",
    "model_shapes",
]
