"""The search space of one optimizer, read from its plugin's ``Param`` schema.

Every optimizer is tuned on ``lr`` (log-uniform, 1e-5 to 1 unless narrowed) plus
the hyperparameters the user picks. A picked parameter's range comes from its
schema's ``minimum`` and ``maximum``; the user may narrow it, and must give one
where the schema leaves a side open (``weight_decay >= 0`` has no top). Whatever is
not picked keeps its default, so a plugin that adds a parameter needs no code here.

How each kind becomes an Optuna dimension:

* ``float`` and ``int``: a float or int range, linear unless ``log`` is asked for;
  an exclusive bound is moved one step inwards (``momentum < 1`` tops out at the
  float just below 1).
* ``bool``: a choice of false or true.
* ``floats`` (a fixed-length tuple such as Adam's ``betas``): one float dimension per
  component, named ``betas.0``, ``betas.1``...; each component is picked on its
  own (``betas.1``) or all at once (``betas``), and an unpicked component keeps its
  default. The schema's bounds apply to every component.

No torch here: the GUI builds its form from ``candidates()`` before torch loads.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from fmnist_gui.errors import FmnistError
from fmnist_gui.plugins.specs import OptimizerSpec, Param, ParamError

LR = "lr"
LR_RANGE = (1e-5, 1.0)
DimensionKind = Literal["float", "int", "bool"]


class SpaceError(FmnistError, ValueError):
    """A hyperparameter or range the search space cannot take; the message says which."""


@dataclass(frozen=True)
class Dimension:
    """One tuned hyperparameter: ``name`` is the Optuna parameter name."""

    name: str
    kind: DimensionKind
    low: float | None = None  # None: the schema leaves this side open
    high: float | None = None
    log: bool = False

    @property
    def complete(self) -> bool:
        """True when it has both bounds (a ``bool`` needs none)."""
        return self.kind == "bool" or (self.low is not None and self.high is not None)

    def distribution(self) -> BaseDistribution:
        if self.kind == "bool":
            return CategoricalDistribution((False, True))
        if not self.complete:
            raise SpaceError(f"{self.name} has no range to search")
        assert self.low is not None and self.high is not None  # complete  # noqa: PT018
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(float(self.low), float(self.high), log=self.log)

    def describe(self) -> str:
        """``lr 1e-05..1 (log)``, ``nesterov false/true``."""
        if self.kind == "bool":
            return f"{self.name} false/true"
        low = "?" if self.low is None else f"{self.low:g}"
        high = "?" if self.high is None else f"{self.high:g}"
        return f"{self.name} {low}..{high}" + (" (log)" if self.log else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "low": self.low,
            "high": self.high,
            "log": self.log,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Dimension:
        return cls(data["name"], data["kind"], data["low"], data["high"], bool(data["log"]))


@dataclass(frozen=True)
class Range:
    """A range the user asked for; ``None`` fields keep the schema's (or lr's default)."""

    low: float | None = None
    high: float | None = None
    log: bool | None = None


def lr_dimension() -> Dimension:
    return Dimension(LR, "float", LR_RANGE[0], LR_RANGE[1], log=True)


def candidates(spec: OptimizerSpec) -> list[Dimension]:
    """Every hyperparameter of ``spec`` that can be tuned, ``lr`` first, with its schema range.

    An open side of a range is ``None``: the user has to close it before it can be
    tuned (``Dimension.complete``). The GUI lists these as checkboxes and range fields.
    """
    found = [lr_dimension()]
    for param in spec.params:
        found.extend(_param_dimensions(param))
    return found


def _param_dimensions(param: Param) -> list[Dimension]:
    if param.kind == "bool":
        return [Dimension(param.name, "bool")]
    low, high = param.minimum, param.maximum
    if param.kind == "int":
        if low is not None:
            low = math.floor(low) + 1 if param.exclusive_minimum else math.ceil(low)
        if high is not None:
            high = math.ceil(high) - 1 if param.exclusive_maximum else math.floor(high)
        return [Dimension(param.name, "int", low, high)]
    # Optuna's float ranges include both ends: an excluded end moves one float inwards.
    if low is not None:
        low = math.nextafter(float(low), math.inf) if param.exclusive_minimum else float(low)
    if high is not None:
        high = math.nextafter(float(high), -math.inf) if param.exclusive_maximum else float(high)
    if param.kind == "float":
        return [Dimension(param.name, "float", low, high)]
    return [Dimension(f"{param.name}.{i}", "float", low, high) for i in range(len(param.default))]


@dataclass(frozen=True)
class OptimizerSpace:
    """What is searched for one optimizer, and what every trial of it starts from.

    ``base`` holds every hyperparameter's value when not tuned (the schema's
    defaults, overlaid with values the user fixed), written down when the sweep
    is made so that every worker trains exactly the same settings.
    """

    optimizer: str
    dimensions: tuple[Dimension, ...]
    base: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Tuples as lists, as JSON gives them back: a space equals itself read from storage.
        plain = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in self.base.items()}
        object.__setattr__(self, "base", plain)
        object.__setattr__(self, "dimensions", tuple(self.dimensions))

    def dimension(self, name: str) -> Dimension:
        for dim in self.dimensions:
            if dim.name == name:
                return dim
        raise KeyError(name)

    def distributions(self) -> dict[str, BaseDistribution]:
        return {dim.name: dim.distribution() for dim in self.dimensions}

    def suggest(self, trial) -> tuple[float, dict[str, Any]]:
        """Ask an Optuna trial for every dimension; return ``(lr, optimizer_params)``."""
        values = {}
        for dim in self.dimensions:
            if dim.kind == "bool":
                values[dim.name] = trial.suggest_categorical(dim.name, [False, True])
            elif dim.kind == "int":
                assert dim.low is not None and dim.high is not None  # noqa: PT018 - complete
                values[dim.name] = trial.suggest_int(
                    dim.name, int(dim.low), int(dim.high), log=dim.log
                )
            else:
                values[dim.name] = trial.suggest_float(dim.name, dim.low, dim.high, log=dim.log)
        return self.settings(values)

    def settings(self, values: Mapping[str, Any]) -> tuple[float, dict[str, Any]]:
        """Optuna parameter values (a trial's ``params``) as ``(lr, optimizer_params)``."""
        params = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in self.base.items()}
        lr = float(values.get(LR, self.base.get(LR, 1e-3)))
        for name, value in values.items():
            if name == LR:
                continue
            param, dot, index = name.partition(".")
            if dot:
                params[param][int(index)] = float(value)
            else:
                params[param] = value
        return lr, {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer,
            "dimensions": [d.to_dict() for d in self.dimensions],
            "base": {k: list(v) if isinstance(v, tuple) else v for k, v in self.base.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OptimizerSpace:
        return cls(
            data["optimizer"],
            tuple(Dimension.from_dict(d) for d in data["dimensions"]),
            dict(data["base"]),
        )


def build_space(
    spec: OptimizerSpec,
    tune: Mapping[str, Range | None] | None = None,
    fixed: Mapping[str, Any] | None = None,
) -> OptimizerSpace:
    """The space for ``spec``: ``lr`` plus the parameters named in ``tune``.

    ``tune`` maps a name (``momentum``, ``betas`` for all components, ``betas.1``
    for one, ``lr`` to narrow it) to a ``Range`` that narrows the schema's, or to
    ``None`` for the schema's own. ``fixed`` gives untuned parameters a value of
    their own instead of the default. Raises ``SpaceError`` naming the problem.
    """
    try:
        base: dict[str, Any] = dict(spec.resolve(fixed or {}))
    except ParamError as exc:
        raise SpaceError(f"{spec.name}: {exc}") from None
    known = {dim.name: dim for dim in candidates(spec)}
    chosen: dict[str, Range | None] = {LR: None}
    for name, wanted in (tune or {}).items():
        components = [n for n in known if n.startswith(f"{name}.")]
        if name in known:
            chosen[name] = wanted
        elif components:  # a whole "floats" parameter: each of its components
            for component in components:
                chosen[component] = wanted
        else:
            names = ", ".join(known) or "none"
            raise SpaceError(f"{spec.name} has no parameter {name!r} to tune (it has: {names})")
    for name in chosen:
        if name.partition(".")[0] in (fixed or {}):
            raise SpaceError(f"{spec.name}: {name} is both tuned and fixed; choose one")
    dims = tuple(_narrow(spec.name, known[name], wanted) for name, wanted in chosen.items())
    return OptimizerSpace(spec.name, dims, base)


def _narrow(optimizer: str, dim: Dimension, wanted: Range | None) -> Dimension:
    what = f"{optimizer}.{dim.name}"
    if dim.kind == "bool":
        if wanted is not None and (wanted.low, wanted.high, wanted.log) != (None, None, None):
            raise SpaceError(f"{what} is true or false: it takes no range")
        return dim
    wanted = wanted or Range()
    low = dim.low if wanted.low is None else wanted.low
    high = dim.high if wanted.high is None else wanted.high
    log = dim.log if wanted.log is None else wanted.log
    if low is None or high is None:
        side = "lower" if low is None else "upper"
        raise SpaceError(
            f"{what} has no {side} bound in its schema: give a range, e.g. {dim.name}=0:0.01"
        )
    for value in (low, high):
        if not math.isfinite(value):
            raise SpaceError(f"{what}: range bounds must be finite numbers, got {value}")
    if dim.kind == "int" and (low != int(low) or high != int(high)):
        raise SpaceError(f"{what} is a whole number: give whole-number bounds")
    if dim.low is not None and low < dim.low or dim.high is not None and high > dim.high:
        raise SpaceError(
            f"{what}: {low:g}..{high:g} goes outside its allowed range "
            f"{_describe_bounds(dim.low, dim.high)}"
        )
    if not low < high:
        raise SpaceError(f"{what}: the range's low end ({low:g}) must be below its high end")
    if log and low <= 0:
        raise SpaceError(f"{what}: a log range must start above 0, got {low:g}")
    if dim.kind == "int":
        low, high = int(low), int(high)
    return Dimension(dim.name, dim.kind, low, high, log)


def _describe_bounds(low: float | None, high: float | None) -> str:
    return f"{'-inf' if low is None else f'{low:g}'}..{'inf' if high is None else f'{high:g}'}"


@dataclass(frozen=True)
class TuneRequest:
    """One ``--tune`` item: a parameter (of one optimizer, or of all that have it) and a range."""

    name: str
    range: Range | None = None
    optimizer: str | None = None  # None: every chosen optimizer that has ``name``


def build_spaces(
    specs: Iterable[OptimizerSpec],
    requests: Iterable[TuneRequest] = (),
    fixed: Iterable[tuple[str | None, str, Any]] = (),
) -> list[OptimizerSpace]:
    """Spaces for several optimizers from requests that may name no optimizer.

    A request without an optimizer applies to every optimizer whose schema has that
    parameter; one that fits none of them is an error, as is one naming an
    optimizer that is not in ``specs``. ``fixed`` items are ``(optimizer or None,
    name, value)`` in the same way.
    """
    specs = list(specs)
    names = [s.name for s in specs]
    requests, fixed = list(requests), list(fixed)
    tune: dict[str, dict[str, Range | None]] = {n: {} for n in names}
    fix: dict[str, dict[str, Any]] = {n: {} for n in names}
    for request in requests:
        for target in _targets(specs, request.optimizer, request.name, "tune"):
            tune[target][request.name] = request.range
    for optimizer, name, value in fixed:
        for target in _targets(specs, optimizer, name, "set"):
            fix[target][name] = value
    return [build_space(s, tune[s.name], fix[s.name]) for s in specs]


def _targets(specs: list[OptimizerSpec], optimizer: str | None, name: str, verb: str) -> list[str]:
    if optimizer is not None:
        if optimizer not in [s.name for s in specs]:
            chosen = ", ".join(s.name for s in specs)
            raise SpaceError(
                f"{verb} {optimizer}.{name}: {optimizer} is not among the optimizers of this "
                f"sweep ({chosen})"
            )
        return [optimizer]
    matching = [s.name for s in specs if name in {d.name for d in candidates(s)} | _whole(s)]
    if not matching:
        have = "; ".join(f"{s.name}: {', '.join(d.name for d in candidates(s))}" for s in specs)
        raise SpaceError(f"no optimizer of this sweep has a parameter {name!r} ({have})")
    return matching


def _whole(spec: OptimizerSpec) -> set[str]:
    return {p.name for p in spec.params}


__all__ = [
    "LR",
    "LR_RANGE",
    "Dimension",
    "OptimizerSpace",
    "Range",
    "SpaceError",
    "TuneRequest",
    "build_space",
    "build_spaces",
    "candidates",
    "lr_dimension",
]
