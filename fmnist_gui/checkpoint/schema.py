"""What a checkpoint file holds, and the check that a loaded one really does.

The training part's shape is ``fmnist_gui.training.state.TrainingState``
(what ``Trainer.state_dict()`` builds); ``CheckpointFile`` adds the file's
header. ``check_checkpoint`` walks those definitions, so a field added there
is checked here with no second list to keep in step. What a type cannot say
(RNG states are 1-D uint8, counts are not negative, the config is valid, the
weights fit the network and are finite, the optimizer's state agrees with the
saved settings and the network) is checked by hand after the walk.
"""

from __future__ import annotations

import dataclasses
import math
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
    _check_optimizer_state(path, obj)


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


def _check_optimizer_state(path: Path, obj: Mapping[str, Any]) -> None:
    """The optimizer's own state_dict must agree with the saved settings and the network.

    It is what the optimizer reads back on resume: a learning rate there that
    differs from the config, or a buffer of another shape, would otherwise only
    show up later as a failure blamed on the optimizer's plugin.
    """
    state_dict = obj["optimizer"]["state_dict"]
    where = "optimizer.state_dict"
    groups, per_param = state_dict.get("param_groups"), state_dict.get("state")
    if not isinstance(groups, list) or not all(isinstance(g, Mapping) for g in groups):
        _damaged(path, f"{where}.param_groups", "a list of dicts")
    if not isinstance(per_param, Mapping):
        _damaged(path, f"{where}.state", "a dict")
    shapes = parameter_shapes()
    settings = _saved_optimizer_settings(obj)
    for i, group in enumerate(groups):
        for key, value in group.items():
            name = f"{where}.param_groups[{i}].{key}"
            if key == "params":
                if not isinstance(value, list) or any(
                    not isinstance(n, int) or not 0 <= n < len(shapes) for n in value
                ):
                    _damaged(path, name, "a list of the network's parameter numbers")
                continue
            # Infinity can be a plugin's setting (Prodigy's growth_rate); NaN never is,
            # and the learning rate must be a finite number.
            if _has_nan(value) or (key == "lr" and not _all_finite(value)):
                _inconsistent(path, name, f"is {_show(value)}, not a finite number")
            if key in settings and _plain(value) != _plain(settings[key]):
                _inconsistent(
                    path,
                    name,
                    f"is {_show(value)}, but the checkpoint's settings say {_show(settings[key])}",
                )
            if key == "lr" and isinstance(value, (int, float)) and value < 0:
                _inconsistent(path, name, f"is {_show(value)}, a negative learning rate")
    for index, entry in per_param.items():
        name = f"{where}.state[{index!r}]"
        if not isinstance(index, int) or not 0 <= index < len(shapes):
            _damaged(path, name, "the state of one of the network's parameters")
        if not isinstance(entry, Mapping):
            _damaged(path, name, "a dict")
        shape = shapes[index]
        for key, value in entry.items():
            if not isinstance(value, torch.Tensor):
                continue
            # A buffer kept per element (momentum, running averages) has the
            # parameter's shape; a scalar step count or a factored statistic
            # (fewer dimensions, other sizes) is the plugin's business.
            per_element = value.dim() == len(shape) or value.numel() == math.prod(shape)
            if value.dim() > 0 and per_element and tuple(value.shape) != shape:
                _inconsistent(
                    path,
                    f"{name}.{key}",
                    f"is {_shape(value.shape)}, but parameter {index} of the network "
                    f"is {_shape(shape)}",
                )
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                _inconsistent(path, f"{name}.{key}", "holds NaN or infinite values")


def _saved_optimizer_settings(obj: Mapping[str, Any]) -> dict[str, Any]:
    # What the optimizer was built with: the config's learning rate and the
    # plugin's resolved hyperparameters. Its param_groups must still say so,
    # except for what a schedule or a recorded live change has moved since.
    settings = {"lr": obj["config"]["lr"], **obj["optimizer"]["params"]}
    scheduler = obj.get("scheduler")
    if isinstance(scheduler, Mapping) and scheduler.get("name") not in (None, "constant"):
        settings.pop("lr", None)
    changes = obj.get("history", {}).get("changes") or []
    for change in changes:
        if isinstance(change, Mapping):
            settings.pop(change.get("name"), None)
    return settings


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, torch.Tensor):
        return value.is_floating_point() and bool(torch.isnan(value).any())
    if isinstance(value, (list, tuple)):
        return any(_has_nan(v) for v in value)
    return False


def _all_finite(value: Any) -> bool:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    if isinstance(value, torch.Tensor):
        return not value.is_floating_point() or bool(torch.isfinite(value).all())
    if isinstance(value, (list, tuple)):
        return all(_all_finite(v) for v in value)
    return True


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _show(value: Any) -> str:
    return repr(_plain(value))


def _inconsistent(path: Path, name: str, what: str) -> NoReturn:
    raise CheckpointError(
        path,
        f"holds inconsistent contents: '{name}' {what}",
        "it was not saved by this app as it is; use another copy",
    )


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


def parameter_shapes() -> list[tuple[int, ...]]:
    """The shapes of the network's parameters, in the order an optimizer numbers them."""
    with torch.device("meta"):
        reference = NeuralNetwork()
    return [tuple(p.shape) for p in reference.parameters()]


def check_model_state(path: Path | str, state: Any) -> None:
    """Raise ``CheckpointError`` unless ``state`` fits ``NeuralNetwork`` exactly.

    Weights that hold NaN or infinity are refused too: nothing useful can be
    trained or evaluated from them.
    """
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
        bad = int((~torch.isfinite(value)).sum())
        if bad:
            raise CheckpointError(
                path,
                f"weight {key} holds {bad} NaN or infinite value{'s' * (bad != 1)}",
                "these weights are unusable (saved after a training diverged?); use another copy",
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
    "parameter_shapes",
]
