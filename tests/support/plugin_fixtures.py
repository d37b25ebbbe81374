"""Real plugins on disk for the plugin tests: single files and installed distributions.

``make_distribution`` writes what pip would leave in site-packages (a
``*.dist-info`` folder with ``METADATA`` and ``entry_points.txt``, plus the
module), so ``importlib.metadata`` finds a genuine entry point once the folder
is on ``sys.path``. Nothing of pluggy or importlib is mocked.
"""

from __future__ import annotations

import contextlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

from fmnist_gui.plugins.host import FILE_MODULE_PREFIX

GOOD_OPTIMIZER = """
import torch
from fmnist_gui import OptimizerSpec, Param, hookimpl

__version__ = "2.5"

def make(params, lr, weight_decay):
    return torch.optim.{cls}(params, lr=lr, weight_decay=weight_decay)

@hookimpl
def fmnist_register_optimizers():
    return [OptimizerSpec(name="{name}", label="{cls}", factory=make,
                          params=(Param("weight_decay", "float", 0.0, minimum=0),))]
"""


def good_optimizer_source(name: str = "my_adagrad", cls: str = "Adagrad") -> str:
    """A working plugin offering ``torch.optim.<cls>`` under ``name``."""
    return GOOD_OPTIMIZER.format(name=name, cls=cls)


def write_plugin(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def make_distribution(
    site_dir: Path,
    dist: str,
    *,
    version: str = "1.0",
    entry_points: dict[str, str],
    modules: dict[str, str] | None = None,
    requires: tuple[str, ...] = (),
) -> Path:
    """Write an installed distribution ``dist`` into ``site_dir`` and return its dist-info.

    ``requires`` become its ``Requires-Dist`` lines; with no ``entry_points`` it is a
    plain library (no ``entry_points.txt``).
    """
    site_dir.mkdir(parents=True, exist_ok=True)
    info = site_dir / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    required = "".join(f"Requires-Dist: {r}\n" for r in requires)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n{required}", encoding="utf-8"
    )
    if entry_points:
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[fmnist_gui]\n{lines}", encoding="utf-8")
    for module, source in (modules or {}).items():
        (site_dir / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return info


# An optimizer that blows up once, at its own step ``blow_at`` (counted per instance,
# so the host's few-step self-test of it passes): after that step it writes ``what``
# into the weights ("nan_weights", "scale_weights": times 1000) or into SGD's
# momentum buffer ("nan_momentum", the weights stay finite for that step).
BOMB_OPTIMIZER = """
import torch
from fmnist_gui import OptimizerSpec, Param, hookimpl

class Bomb(torch.optim.SGD):
    def __init__(self, params, lr, blow_at, what):
        super().__init__(params, lr=lr, momentum=0.9)
        self.steps, self.blow_at, self.what = 0, blow_at, what

    @torch.no_grad()
    def step(self, closure=None):
        super().step(closure)
        self.steps += 1
        if self.steps != self.blow_at:
            return
        for group in self.param_groups:
            for p in group["params"]:
                if self.what == "nan_momentum":
                    self.state[p]["momentum_buffer"].fill_(float("nan"))
                elif self.what == "scale_weights":
                    p.mul_(1000.0)
                else:
                    p.fill_(float("nan"))

def factory(what):
    def make(params, lr, blow_at):
        return Bomb(params, lr, blow_at, what)
    return make

@hookimpl
def fmnist_register_optimizers():
    return [
        OptimizerSpec(name=f"bomb_{what}", label=f"Bomb {what}", factory=factory(what),
                      params=(Param("blow_at", "int", 1000, minimum=1),))
        for what in ("nan_weights", "nan_momentum", "scale_weights")
    ]
"""


@contextlib.contextmanager
def forgetting_plugin_modules(*prefixes: str) -> Iterator[None]:
    """Forget, on leaving, the plugin modules imported inside: file plugins and ``prefixes``.

    The next test then imports its own plugin files afresh, even under a name used before.
    """
    before = set(sys.modules)
    try:
        yield
    finally:
        for name in set(sys.modules) - before:
            if name.startswith((FILE_MODULE_PREFIX, *prefixes)):
                del sys.modules[name]
