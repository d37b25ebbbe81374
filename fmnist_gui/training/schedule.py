"""Learning-rate schedules and live hyperparameter changes, for the ``Trainer``.

A schedule comes from a ``SchedulerSpec`` plugin and is stepped once per batch.
A live change edits the optimizer's param groups in place at a batch boundary
(its state, e.g. Adam's moments, is kept) and is recorded as a ``Change``: the
step it came after (``global_step``), the name and the value. Replaying the
same changes at the same steps gives the same numbers bit for bit; a change
file (``fmnist-train --changes``) is a JSON list of ``{"step": N, "lr": x}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypedDict

import torch

from fmnist_gui.plugins.boundary import PluginFailure
from fmnist_gui.plugins.specs import OptimizerSpec, Param, ParamError, SchedulerSpec
from fmnist_gui.training.config import ConfigError

#: The learning rate is changeable for every optimizer.
LR_PARAM = Param(
    "lr", "float", 1e-3, "Learning rate.", minimum=0, exclusive_minimum=True, live=True
)


class Change(TypedDict):
    """One live change: applied after ``step`` batches, before the next one."""

    step: int
    name: str
    value: Any  # a number, or a list of numbers for a "floats" parameter


def live_params(spec: OptimizerSpec) -> dict[str, Param]:
    """The hyperparameters of ``spec`` that may change while it trains, ``lr`` first."""
    return {"lr": LR_PARAM, **{p.name: p for p in spec.params if p.live}}


def check_values(spec: OptimizerSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` checked against ``spec``'s changeable parameters; ``ParamError`` if not."""
    allowed = live_params(spec)
    checked: dict[str, Any] = {}
    for name, value in values.items():
        if name not in allowed:
            raise ParamError(
                f"{name!r} cannot be changed while optimizer {spec.name!r} trains "
                f"(changeable: {', '.join(allowed)})"
            )
        param = allowed[name]
        checked[name] = param.parse(value) if isinstance(value, str) else param.coerce(value)
    if not checked:
        raise ParamError("a change must set at least one value")
    return checked


def apply_values(optimizer: torch.optim.Optimizer, values: Mapping[str, Any]) -> None:
    """Set ``values`` in every param group of ``optimizer``, in place."""
    for name in values:
        if any(name not in group for group in optimizer.param_groups):
            raise ParamError(f"the optimizer has no {name!r} in its param groups to change")
    for group in optimizer.param_groups:
        for name, value in values.items():
            group[name] = tuple(value) if isinstance(value, (list, tuple)) else value


def build_scheduler(
    spec: SchedulerSpec,
    params: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    steps_per_epoch: int,
) -> torch.optim.lr_scheduler.LRScheduler:
    """``spec``'s schedule over ``optimizer``; a ``PluginFailure`` names the plugin if it fails."""
    what = f"scheduler {spec.name!r} (plugin {spec.plugin!r})"
    try:
        scheduler = spec.factory(
            optimizer, total_steps=total_steps, steps_per_epoch=steps_per_epoch, **params
        )
    except Exception as exc:
        raise PluginFailure(spec.plugin, f"{what} failed to build: {exc}") from exc
    if not isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
        raise PluginFailure(
            spec.plugin,
            f"{what} returned {type(scheduler).__name__}, not a torch.optim.lr_scheduler."
            "LRScheduler",
        )
    return scheduler


def parse_changes(items: Any, source: str = "the change list") -> list[Change]:
    """Turn ``[{"step": N, "lr": x, ...}, ...]`` (or recorded ``Change`` dicts) into changes.

    Raises ``ConfigError`` naming the entry that is not of that form. The values
    are checked against an optimizer later (``check_values``).
    """
    if not isinstance(items, list):
        raise ConfigError(f'{source} must be a JSON list of {{"step": N, "lr": x}} entries')
    changes: list[Change] = []
    for i, item in enumerate(items):
        step = item.get("step") if isinstance(item, dict) else None
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ConfigError(f'{source}, entry {i}: needs a "step" that is a whole number >= 0')
        if set(item) == {"step", "name", "value"}:
            values = {item["name"]: item["value"]}
        else:
            values = {k: v for k, v in item.items() if k != "step"}
        if not values or not all(isinstance(k, str) for k in values):
            raise ConfigError(f"{source}, entry {i}: names no value to change")
        changes += [Change(step=step, name=k, value=v) for k, v in values.items()]
    changes.sort(key=lambda c: c["step"])  # stable: same-step changes keep their order
    return changes


def load_changes(path: Path) -> list[Change]:
    """Read a change file (``fmnist-train --changes``); ``ConfigError`` if it is not one."""
    try:
        items = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read change file {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"change file {path} is not valid JSON: {exc}") from None
    return parse_changes(items, f"change file {path}")


def group_by_step(changes: Iterable[Change]) -> dict[int, dict[str, Any]]:
    """``{step: {name: value}}``, later changes of a name at one step winning."""
    grouped: dict[int, dict[str, Any]] = {}
    for change in changes:
        grouped.setdefault(change["step"], {})[change["name"]] = change["value"]
    return grouped


__all__ = [
    "LR_PARAM",
    "Change",
    "apply_values",
    "build_scheduler",
    "check_values",
    "group_by_step",
    "live_params",
    "load_changes",
    "parse_changes",
]
