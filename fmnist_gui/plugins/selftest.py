"""A quick check of every optimizer and loss a plugin registers, before it is offered.

Each optimizer is built on a tiny network and stepped a few times on a fixed
synthetic batch: the factory must return a ``torch.optim.Optimizer``, ``step()``
must not raise, and the loss must stay finite and go down. Each loss must
return a finite scalar tensor that can be differentiated. A spec that fails is
not offered for training; its plugin's record says why. Whatever the plugin's
code raises counts as its failure, ``SystemExit`` and ``KeyboardInterrupt``
included (``fmnist_gui.plugins.boundary``); only a real Ctrl-C passes through.

The check takes a few milliseconds per spec. It runs under
``torch.random.fork_rng`` so it never disturbs the caller's random stream
(the engine's ``--seed`` reproducibility depends on that), and it does not
guard against a factory that never returns or ends the process: nothing
in-process can (``fmnist_gui.plugins.probe`` runs it in a separate process first).

Results are cached (``SelfTestCache``, ``plugin-selftests.json`` under the user
data folder), keyed by what could change them: the plugin's identity (its
file's SHA-256, or its distribution's name and version, the versions of its
installed requirements (a wrapped library such as pytorch-optimizer) and the
SHA-256 of its module), the spec (name, factory, every ``Param`` with its default and range),
the check's own version and torch's version. A warm start then runs no check at
all and never touches ``torch.optim``, whose first use costs seconds (it imports
``torch._dynamo``). This is a different question from ``probe.py``'s verdicts,
which say whether importing a plugin let the process live; they share only the
storage style.

Plugin authors can call ``check_optimizer(spec)`` / ``check_loss(spec)`` from
their own tests (see ``plugins/README.md``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist_gui.plugins.boundary import describe, from_plugin
from fmnist_gui.system.fileio import write_atomically
from fmnist_gui.system.paths import user_data_dir

if TYPE_CHECKING:
    from fmnist_gui.plugins.specs import LossSpec, OptimizerSpec

#: Optimizer steps taken on the synthetic batch.
STEPS = 8
#: The learning rate of the check: the tutorial's default.
LEARNING_RATE = 1e-3
NUM_CLASSES = 10  # the losses see logits shaped like the real network's
_FEATURES, _HIDDEN, _BATCH = 16, 32, 64
#: Part of every cache key: raise it when the checks change what they accept.
CHECK_VERSION = 1
CACHE_FILE = "plugin-selftests.json"
CACHE_FORMAT = 1
#: Results kept in the cache; the oldest go first (a zoo has ~130 specs).
CACHE_LIMIT = 2000


@dataclass(frozen=True)
class SelfTestResult:
    """The outcome of checking one spec. ``reason`` says what failed, in words."""

    kind: str  # "optimizer" or "loss"
    name: str
    ok: bool
    reason: str = ""
    seconds: float = 0.0
    losses: tuple[float, ...] = field(default=(), repr=False)


def check_optimizer(
    spec: OptimizerSpec,
    values: dict[str, Any] | None = None,
    *,
    steps: int = STEPS,
    lr: float = LEARNING_RATE,
) -> SelfTestResult:
    """Build ``spec``'s optimizer (defaults overlaid with ``values``) and step it."""
    import torch
    from torch.nn import functional as F

    started = time.perf_counter()

    def result(ok: bool, reason: str = "", losses=()) -> SelfTestResult:
        return SelfTestResult(
            "optimizer", spec.name, ok, reason, time.perf_counter() - started, tuple(losses)
        )

    with _quiet_torch():
        model, X, y = _problem()
        try:
            hyper = spec.resolve(values)
            optimizer = spec.factory(model.parameters(), lr=lr, **hyper)
        except BaseException as exc:
            if not from_plugin(exc):
                raise
            return result(False, f"factory raised {describe(exc)}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            return result(
                False, f"factory returned {type(optimizer).__name__}, not a torch.optim.Optimizer"
            )
        losses: list[float] = []
        try:
            for _ in range(steps):
                loss = F.cross_entropy(model(X), y)
                losses.append(loss.item())
                if not math.isfinite(losses[-1]):
                    return result(
                        False,
                        f"diverged: the loss became {losses[-1]} after {len(losses) - 1} steps",
                        losses,
                    )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                losses.append(F.cross_entropy(model(X), y).item())
        except BaseException as exc:
            if not from_plugin(exc):
                raise
            return result(False, f"step {len(losses)} of {steps} raised {describe(exc)}", losses)
        if not math.isfinite(losses[-1]):
            return result(
                False, f"diverged: the loss became {losses[-1]} after {steps} steps", losses
            )
        # "Goes down": the best loss seen after stepping beats the start. The
        # best, not the last, so an optimizer that overshoots once still passes.
        if min(losses[1:]) >= losses[0]:
            return result(
                False,
                f"the loss did not go down in {steps} steps at lr {lr:g} "
                f"({losses[0]:.4g} -> {losses[-1]:.4g})",
                losses,
            )
        return result(True, losses=losses)


def check_loss(spec: LossSpec, values: dict[str, Any] | None = None) -> SelfTestResult:
    """Build ``spec``'s loss and call it on random logits and targets."""
    import torch

    started = time.perf_counter()

    def result(ok: bool, reason: str = "") -> SelfTestResult:
        return SelfTestResult("loss", spec.name, ok, reason, time.perf_counter() - started)

    with _quiet_torch():
        _, X, y = _problem()
        logits = torch.randn(X.shape[0], NUM_CLASSES, requires_grad=True)
        try:
            loss_fn = spec.factory(**spec.resolve(values))
        except BaseException as exc:
            if not from_plugin(exc):
                raise
            return result(False, f"factory raised {describe(exc)}")
        if not callable(loss_fn):
            return result(False, f"factory returned {type(loss_fn).__name__}, not a callable")
        try:
            loss = loss_fn(logits, y)
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else None
                what = f"a tensor of shape {shape}" if shape else type(loss).__name__
                return result(False, f"returned {what}, not a scalar tensor")
            if not math.isfinite(loss.item()):
                return result(False, f"returned {loss.item()} on ordinary logits")
            loss.backward()
        except BaseException as exc:
            if not from_plugin(exc):
                raise
            return result(False, f"raised {describe(exc)}")
        if logits.grad is None:
            return result(False, "the loss does not depend on the logits (no gradient)")
        return result(True)


def warm_up() -> None:
    """Pay torch's one-off costs now (its first backward() imports ~3 s of modules).

    The plugin probe calls it before timing its first plugin.
    """
    from torch.nn import functional as F

    with _quiet_torch():
        model, X, y = _problem()
        F.cross_entropy(model(X), y).backward()


def _problem():
    """A tiny network and a learnable batch: the class is the argmax of a fixed projection."""
    import torch
    from torch import nn

    torch.manual_seed(0)  # inside fork_rng: the caller's stream is restored afterwards
    X = torch.randn(_BATCH, _FEATURES)
    y = (X @ torch.randn(_FEATURES, NUM_CLASSES)).argmax(1)
    model = nn.Sequential(nn.Linear(_FEATURES, _HIDDEN), nn.ReLU(), nn.Linear(_HIDDEN, NUM_CLASSES))
    return model, X, y


@contextlib.contextmanager
def _quiet_torch() -> Iterator[None]:
    import torch

    # One intra-op thread: on a busy machine the thread pool's wake-ups cost
    # 20x the arithmetic of such tiny tensors (20 ms vs 1 ms per step here).
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        if threads != 1:
            torch.set_num_threads(1)
        try:
            with torch.enable_grad():
                yield
        finally:
            if threads != 1:
                torch.set_num_threads(threads)


def spec_fingerprint(kind: str, spec: Any) -> str:
    """What of ``spec`` a self-test depends on: name, factory and schema, as one string."""
    factory = spec.factory
    where = f"{getattr(factory, '__module__', '')}.{getattr(factory, '__qualname__', '')}"
    params = [
        (
            p.name,
            p.kind,
            repr(p.default),
            p.minimum,
            p.maximum,
            p.exclusive_minimum,
            p.exclusive_maximum,
        )
        for p in spec.params
    ]
    return json.dumps([kind, spec.name, where, params], default=repr)


class SelfTestCache:
    """Self-test results of earlier starts, by plugin identity and spec.

    ``identity`` (from the host) names the exact plugin code: a file's SHA-256
    or ``dist==version`` plus its module's SHA-256. An empty identity is never
    cached: an object registered from memory has nothing stable to key on.
    ``hits`` and ``misses`` count look-ups since this object was made.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else user_data_dir() / CACHE_FILE
        self.hits = 0
        self.misses = 0
        self._entries: dict[str, dict[str, Any]] | None = None
        self._dirty = False
        self._torch = ""

    def key(self, identity: str, kind: str, spec: Any) -> str:
        """The cache key of ``spec`` from the plugin ``identity``; "" when not cacheable."""
        if not identity:
            return ""
        if not self._torch:
            try:
                self._torch = importlib.metadata.version("torch")
            except importlib.metadata.PackageNotFoundError:
                self._torch = "?"
        text = json.dumps([CHECK_VERSION, self._torch, identity, spec_fingerprint(kind, spec)])
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str) -> SelfTestResult | None:
        """The stored result for ``key``, or None (counted as a miss)."""
        entry = self._load().get(key) if key else None
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        return SelfTestResult(
            entry["kind"], entry["name"], bool(entry["ok"]), entry["reason"], entry["seconds"]
        )

    def put(self, key: str, result: SelfTestResult) -> None:
        """Remember ``result`` under ``key`` (written by ``flush``)."""
        if not key:
            return
        entries = self._load()
        entries.pop(key, None)  # re-inserted last: the newest are kept
        entries[key] = {
            "kind": result.kind,
            "name": result.name,
            "ok": result.ok,
            "reason": result.reason,
            "seconds": round(result.seconds, 6),
        }
        self._dirty = True

    def flush(self) -> None:
        """Write new results, if any; a folder that cannot be written only costs re-checks."""
        if not self._dirty or self._entries is None:
            return
        keep = dict(list(self._entries.items())[-CACHE_LIMIT:])
        data = json.dumps({"format": CACHE_FORMAT, "results": keep}, indent=0).encode()
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, lambda out: out.write(data))
        self._dirty = False

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                entries = data["results"] if data.get("format") == CACHE_FORMAT else {}
                self._entries = {
                    str(k): {
                        "kind": str(v["kind"]),
                        "name": str(v["name"]),
                        "ok": bool(v["ok"]),
                        "reason": str(v["reason"]),
                        "seconds": float(v["seconds"]),
                    }
                    for k, v in entries.items()
                }
            except (OSError, ValueError, TypeError, KeyError, AttributeError):
                self._entries = {}  # missing or damaged: the specs are simply checked again
        return self._entries
