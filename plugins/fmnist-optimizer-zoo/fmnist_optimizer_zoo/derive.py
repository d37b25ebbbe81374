"""Turn an optimizer class into an ``OptimizerSpec`` by reading its signature and docstring.

Nothing here knows any one optimizer: the rules below apply to every class
``pytorch_optimizer.load_optimizer(name)`` returns, so a new release of the
library brings its new optimizers with it.

The rules (plugins/README.md explains them to plugin authors):

1. The first argument of ``__init__`` receives the model's parameters and
   ``lr`` the app's learning rate: neither is a ``Param``.
2. ``foreach``, ``fused``, ``capturable``, ``differentiable`` (how the update
   is computed, not what it computes) and ``maximize`` (the app minimises a
   loss) are left at the library's default. So is ``*args``/``**kwargs``.
3. A keyword whose default is exactly a bool, int, float or a tuple of floats
   becomes a ``Param`` with that default: ``bool``, ``int``, ``float``,
   ``floats``. An int default annotated ``float`` (``weight_decay: float = 0``)
   is a float; an ``IntEnum`` default is an option, not a number (rule 4).
4. Anything else (strings, enums, dtypes, callables, a ``None`` that means
   "derive it", an infinite default that means "unbounded") is left at the
   library's default: a ``Param`` has no "unset" and holds finite numbers only.
5. Ranges where the name says what the number is: ``betas`` and other decay
   rates in [0, 1); ``eps``, weight decay, other decays, learning rates and
   counts of steps at least 0. A range is kept only if the library's own
   default lies in it, so a rule can never refuse a default.
6. The label is the class name; the description the docstring's first
   sentence; each ``Param``'s help its line in the docstring's ``Args:``.

An optimizer that wants what the training loop does not give (its first
argument is a model or another optimizer, parameters split into groups by
role, a required argument without a default, no ``lr`` at all, a ``step()``
that needs a closure, the Hessian or any other argument) still gets a spec,
whose factory raises ``UnsupportedOptimizerError`` with the reason: the app's
self-test then refuses it and shows why, as it would any plugin's broken factory.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fmnist_gui import OptimizerSpec, Param

#: The prefix of every spec name, so ``zoo_adam`` never clashes with the built-in ``adam``.
PREFIX = "zoo_"
#: Switches of how an update is computed, not of what it computes; and ``maximize``.
NOT_HYPERPARAMETERS = frozenset({"foreach", "fused", "capturable", "differentiable", "maximize"})
#: First arguments that mean the optimizer is built from the model's parameters.
PARAMS_ARGUMENTS = frozenset({"params"})

_FRACTION = re.compile(r"^(betas?\d*|.*_betas?\d*|betas_.*|beta_.*|momentum|.*_momentum|rho|nus)$")
_NON_NEGATIVE = re.compile(
    r"^(eps(_?\d+)?|.*_eps|.*weight_decay.*|(.*_)?wd(_.*)?|.*decay.*|dampening|"
    r"(.*_)?lr(_.*)?|(.*_)?(steps?|iter|iterations?|frequency|period|gap|size)|num_.*)$"
)
_ARGS_LINE = re.compile(r"^(\*{0,2}\w+)(?:\s*\([^)]*\))?\s*:\s*(.*)$")


class UnsupportedOptimizerError(RuntimeError):
    """Raised by a zoo factory whose optimizer the app's training loop cannot drive."""


@dataclass(frozen=True)
class ZooFactory:
    """``factory(params, lr, **hyperparameters)`` for one library optimizer.

    The class is looked up again on each call (cheap: the module is imported),
    so a spec holds a name and pickles as one; ``refusal`` makes it raise instead.
    """

    library_name: str
    refusal: str = ""

    def __call__(self, params, lr: float, **hyperparameters: Any):
        if self.refusal:
            raise UnsupportedOptimizerError(self.refusal)
        from pytorch_optimizer import load_optimizer

        return load_optimizer(self.library_name)(params, lr=lr, **hyperparameters)


def spec_for(library_name: str, cls: type) -> OptimizerSpec:
    """The ``OptimizerSpec`` for ``cls``, registered by the library as ``library_name``."""
    signature = inspect.signature(cls.__init__)
    arguments = [p for p in signature.parameters.values() if p.name != "self"]
    hints = _hints(cls.__init__)
    helps = docstring_args(cls.__doc__ or "")
    params: list[Param] = []
    refusal = refusal_for(cls, arguments, helps)
    if not refusal:
        for argument in arguments[1:]:
            param = param_for(argument, hints.get(argument.name), helps.get(argument.name, ""))
            if param is not None:
                params.append(param)
    return OptimizerSpec(
        name=PREFIX + library_name,
        label=cls.__name__,
        factory=ZooFactory(library_name, refusal),
        params=tuple(params),
        description=first_sentence(cls.__doc__ or "") or f"{cls.__name__} from pytorch-optimizer.",
    )


def refusal_for(cls: type, arguments: list[inspect.Parameter], helps: dict[str, str]) -> str:
    """Why the training loop cannot drive ``cls``; empty if it can.

    The loop builds the optimizer from ``model.parameters()`` and ``lr`` alone,
    then calls ``loss.backward()`` and ``optimizer.step()`` with no arguments.
    """
    if not arguments:
        return "its constructor takes no arguments"
    first = arguments[0].name
    if first == "model":
        return "it is built from the model itself (its first argument is `model`)"
    if first == "optimizer":
        return "it wraps another optimizer (its first argument is `optimizer`)"
    if first not in PARAMS_ARGUMENTS:
        return f"its first argument is `{first}`, not the model's parameters"
    params_help = helps.get(first, "")
    if params_help and "to optimize" not in params_help.lower():
        # e.g. Muon: "Parameter group dictionaries with a use_muon flag for each group."
        return (
            f"it needs the parameters split into groups by role (`params`: {params_help}); "
            "the app passes model.parameters()"
        )
    required = [
        a.name
        for a in arguments[1:]
        if a.default is inspect.Parameter.empty
        and a.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if required:
        names = ", ".join(f"`{n}`" for n in required)
        return f"it needs {names}, which has no default and which the app does not know"
    if not any(a.name == "lr" for a in arguments):
        return "it has no `lr` argument, so the app's learning rate would be ignored"
    return step_refusal(cls)


def step_refusal(cls: type) -> str:
    """Why ``cls.step()`` cannot be called bare, as the training loop calls it; empty if it can."""
    try:
        parameters = list(inspect.signature(cls.step).parameters.values())[1:]
    except (TypeError, ValueError):
        return ""
    for p in parameters:
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if p.name == "closure":
            if p.default is inspect.Parameter.empty:
                return (
                    "its step() requires a closure that re-evaluates the loss; "
                    "the training loop calls step() without one"
                )
            continue
        if "hessian" in p.name:
            return (
                f"its step() takes `{p.name}`: it estimates curvature through the gradients' "
                "graph, which needs loss.backward(create_graph=True); the training loop calls "
                "plain backward() and step()"
            )
        return f"its step() takes `{p.name}`, which the training loop does not pass"
    return ""


def param_for(argument: inspect.Parameter, hint: Any, help_text: str) -> Param | None:
    """The ``Param`` for one constructor argument, or None when it is not a hyperparameter."""
    name, default = argument.name, argument.default
    if name == "lr" or name in NOT_HYPERPARAMETERS or name.startswith("_"):
        return None
    if argument.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
        return None
    kind = _kind(default, hint)
    if kind is None:
        return None
    if kind == "float":
        default = float(default)
    elif kind == "floats":
        default = tuple(float(v) for v in default)
    help_text = help_text or name.replace("_", " ").capitalize() + "."
    try:
        plain = Param(name, kind, default, help_text)
    except ValueError:  # e.g. an infinite default ("unbounded"), which a Param cannot hold
        return None
    if kind == "bool":
        return plain
    for bounds in _ranges(name, kind, default):
        try:
            return Param(name, kind, default, help_text, **bounds)
        except ValueError:  # the library's default lies outside: try the next, looser range
            continue
    return plain


def _kind(default: Any, hint: Any) -> str | None:
    # Exact types: an IntEnum or a float subclass is an option, not a number to type in.
    if type(default) is bool:
        return "bool"
    if type(default) is int:
        return "float" if _mentions(hint, float) and not _mentions(hint, int) else "int"
    if type(default) is float:
        return "float"
    # Ints in a tuple (Muon's ns_reset_steps) would come back as floats: not a "floats".
    if type(default) is tuple and default and all(type(v) is float for v in default):
        return "floats"
    return None


def _ranges(name: str, kind: str, default: Any) -> list[dict[str, Any]]:
    """Candidate bounds for ``name``, tightest first; empty when nothing is knowable."""
    if _FRACTION.match(name) and kind in ("float", "floats"):
        return [
            {"minimum": 0, "maximum": 1, "exclusive_maximum": True},
            {"minimum": 0, "maximum": 1},
            {"minimum": 0},
        ]
    if _NON_NEGATIVE.match(name):
        return [{"minimum": 0}]
    return []


def _mentions(hint: Any, target: type) -> bool:
    if hint is target:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_mentions(h, target) for h in typing.get_args(hint))
    return False


def _hints(function: Callable) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:  # noqa: BLE001 - an unresolvable annotation only loses the int->float hint
        return {}


def first_sentence(doc: str) -> str:
    """The docstring's first sentence, on one line."""
    paragraph = inspect.cleandoc(doc).split("\n\n", 1)[0]
    text = " ".join(paragraph.split())
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    return match.group(1) if match else text


def docstring_args(doc: str) -> dict[str, str]:
    """``name -> one-line help`` from a Google-style ``Args:`` block (continuations joined)."""
    lines = inspect.cleandoc(doc).splitlines()
    helps: dict[str, str] = {}
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() in ("Args:", "Arguments:"))
    except StopIteration:
        return helps
    indent = None
    current = None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if indent is None:
            indent = depth
        if depth < indent:
            break  # the next section
        if depth == indent:
            match = _ARGS_LINE.match(line.strip())
            if not match:
                break
            current = match.group(1).lstrip("*")
            helps[current] = match.group(2).strip()
        elif current is not None:
            helps[current] = f"{helps[current]} {line.strip()}".strip()
    return {k: _one_line(v) for k, v in helps.items()}


def _one_line(text: str) -> str:
    text = re.sub(r"`+", "", " ".join(text.split()))
    return text if not text or text.endswith(".") else text + "."
