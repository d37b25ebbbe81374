"""Real plugins on disk for the plugin tests: single files and installed distributions.

``make_distribution`` writes what pip would leave in site-packages (a
``*.dist-info`` folder with ``METADATA`` and ``entry_points.txt``, plus the
module), so ``importlib.metadata`` finds a genuine entry point once the folder
is on ``sys.path``. Nothing of pluggy or importlib is mocked.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

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
) -> Path:
    """Write an installed distribution ``dist`` into ``site_dir`` and return its dist-info."""
    site_dir.mkdir(parents=True, exist_ok=True)
    info = site_dir / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[fmnist_gui]\n{lines}", encoding="utf-8")
    for module, source in (modules or {}).items():
        (site_dir / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return info
