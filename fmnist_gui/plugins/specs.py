"""What a plugin declares: optimizers, losses and their hyperparameter schemas.

These are plain frozen dataclasses with no torch or Qt in them. The GUI builds
its forms from ``Param`` and the CLI parses ``--opt-param KEY=VALUE`` with it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from fmnist_gui.errors import FmnistError

ParamKind = Literal["float", "int", "bool", "floats"]
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class ParamError(FmnistError, ValueError):
    """A hyperparameter value or key that a schema refuses; the message says why."""


@dataclass(frozen=True)
class Param:
    """One hyperparameter of an optimizer or loss.

    ``kind`` is ``"float"``, ``"int"``, ``"bool"`` or ``"floats"`` (a fixed-length
    tuple of floats such as Adam's betas; its length is the default's).
    ``minimum``/``maximum`` bound numbers (each element for ``"floats"``);
    ``exclusive_minimum`` makes the lower bound strict (``lr > 0``).
    ``live`` marks an optimizer hyperparameter that may be changed while a
    model trains (it must be a key of the optimizer's param groups).
    """

    name: str
    kind: ParamKind
    default: Any
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    # True when the value may change while a model trains (edited in the
    # optimizer's param groups at a batch boundary, its state kept).
    live: bool = False

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"parameter name {self.name!r} must be lower_snake_case")
        if self.kind not in ("float", "int", "bool", "floats"):
            raise ValueError(f"parameter {self.name!r}: unknown kind {self.kind!r}")
        # Normalise the default through the same checks user values go through,
        # so a bad schema fails when the plugin registers, not when it trains.
        object.__setattr__(self, "default", self.coerce(self.default))

    def parse(self, text: str) -> Any:
        """Turn user text (CLI or a form field) into a checked value."""
        text = text.strip()
        try:
            if self.kind == "bool":
                lowered = text.lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if self.kind == "int":
                return self.coerce(int(text))
            if self.kind == "float":
                return self.coerce(float(text))
            parts = [p for p in re.split(r"[,\s]+", text.strip("()[] ")) if p]
            return self.coerce(tuple(float(p) for p in parts))
        except ParamError:
            raise
        except (ValueError, TypeError):
            raise ParamError(f"{self.name}: {text!r} is not {self.describe_kind()}") from None

    def coerce(self, value: Any) -> Any:
        """Check a Python value against the schema and return it normalised."""
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ParamError(f"{self.name}: expected true or false, got {value!r}")
            return value
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ParamError(f"{self.name}: expected a whole number, got {value!r}")
            self._check_range(value)
            return value
        if self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ParamError(f"{self.name}: expected a number, got {value!r}")
            value = float(value)
            self._check_range(value)
            return value
        if not isinstance(value, (tuple, list)) or not value:
            raise ParamError(f"{self.name}: expected numbers separated by commas, got {value!r}")
        try:
            values = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            raise ParamError(
                f"{self.name}: expected numbers separated by commas, got {value!r}"
            ) from None
        default = getattr(self, "default", None)
        if isinstance(default, tuple) and len(values) != len(default):
            raise ParamError(
                f"{self.name}: expected {len(default)} numbers separated by commas, "
                f"got {len(values)}"
            )
        for v in values:
            self._check_range(v)
        return values

    def format(self, value: Any) -> str:
        """The inverse of ``parse``: text a user could type back in."""
        if self.kind == "bool":
            return "true" if value else "false"
        if self.kind == "floats":
            return ",".join(f"{v:g}" for v in value)
        return f"{value:g}" if self.kind == "float" else str(value)

    def describe_kind(self) -> str:
        return {
            "bool": "true or false",
            "int": "a whole number",
            "float": "a number",
            "floats": "numbers separated by commas",
        }[self.kind]

    def describe_range(self) -> str:
        """The accepted range in words, e.g. ``0 <= x < 1``; empty when unbounded."""
        low = high = ""
        if self.minimum is not None:
            low = f"{self.minimum:g} {'<' if self.exclusive_minimum else '<='} "
        if self.maximum is not None:
            high = f" {'<' if self.exclusive_maximum else '<='} {self.maximum:g}"
        return f"{low}{self.name}{high}" if (low or high) else ""

    def _check_range(self, value: float) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            raise ParamError(f"{self.name}: must be a finite number, got {value}")
        too_low = self.minimum is not None and (
            value <= self.minimum if self.exclusive_minimum else value < self.minimum
        )
        too_high = self.maximum is not None and (
            value >= self.maximum if self.exclusive_maximum else value > self.maximum
        )
        if too_low or too_high:
            raise ParamError(f"{self.name}: {value:g} is out of range ({self.describe_range()})")


def _check_name(kind: str, name: str) -> None:
    if not _NAME_RE.match(name):
        raise ValueError(f"{kind} name {name!r} must be lower_snake_case (e.g. 'my_adam')")


@dataclass(frozen=True)
class _Spec:
    name: str
    label: str
    factory: Callable[..., Any]
    params: tuple[Param, ...] = ()
    description: str = ""
    # Filled in by the host, never by the plugin: which plugin registered it.
    plugin: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        _check_name(type(self).__name__.removesuffix("Spec").lower(), self.name)
        if not callable(self.factory):
            raise ValueError(f"{self.name}: factory must be callable")
        object.__setattr__(self, "params", tuple(self.params))
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: a parameter name is declared twice")

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.params) or "none"
        raise ParamError(f"{self.name} has no parameter {name!r} (known: {known})")

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def resolve(self, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The defaults overlaid with ``values``, every value checked."""
        resolved = self.defaults()
        for key, value in (values or {}).items():
            param = self.param(key)
            resolved[key] = param.parse(value) if isinstance(value, str) else param.coerce(value)
        return resolved

    def parse_assignments(self, assignments: list[str]) -> dict[str, Any]:
        """Parse ``KEY=VALUE`` strings (the CLI's ``--opt-param``)."""
        values: dict[str, Any] = {}
        for item in assignments:
            key, sep, text = item.partition("=")
            if not sep or not key.strip():
                raise ParamError(f"{item!r} is not KEY=VALUE")
            values[key.strip()] = self.param(key.strip()).parse(text)
        return values


@dataclass(frozen=True)
class OptimizerSpec(_Spec):
    """An optimizer a plugin offers.

    ``factory(params, lr=..., **hyperparameters)`` returns a
    ``torch.optim.Optimizer``. ``lr`` is always passed (the learning rate is a
    training setting shared by all optimizers); ``params`` declares the rest.
    """


@dataclass(frozen=True)
class LossSpec(_Spec):
    """A loss function a plugin offers.

    ``factory(**hyperparameters)`` returns ``loss_fn(logits, targets)``, which
    returns a scalar tensor to minimise.
    """


@dataclass(frozen=True)
class SchedulerSpec(_Spec):
    """A learning-rate schedule a plugin offers, stepped once per batch.

    ``factory(optimizer, *, total_steps, steps_per_epoch, **hyperparameters)``
    returns a ``torch.optim.lr_scheduler.LRScheduler`` over ``optimizer``, whose
    param groups start at the run's learning rate. ``total_steps`` is the
    number of batches of the whole run, ``steps_per_epoch`` those of an epoch.
    """
