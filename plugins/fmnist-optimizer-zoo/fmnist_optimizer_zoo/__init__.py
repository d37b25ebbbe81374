"""fmnist-gui plugin: every optimizer of the pytorch-optimizer library, schemas derived.

``pyproject.toml`` declares this module in the ``fmnist_gui`` entry-point
group. The hook asks the library which optimizers it has and builds one spec
per optimizer from its constructor's signature and docstring
(``fmnist_optimizer_zoo.derive``); there is no hand-written list. The app
self-tests each spec and offers those that pass; ``python -m
fmnist_optimizer_zoo.table`` lists which do and why the others do not.
"""

from __future__ import annotations

from fmnist_gui import OptimizerSpec, hookimpl
from fmnist_optimizer_zoo.derive import PREFIX, UnsupportedOptimizerError, spec_for

__version__ = "1.0.0"
__all__ = ["PREFIX", "UnsupportedOptimizerError", "fmnist_register_optimizers", "optimizer_specs"]


def optimizer_specs() -> list[OptimizerSpec]:
    """One spec per optimizer ``pytorch_optimizer.get_supported_optimizers()`` names."""
    from pytorch_optimizer import get_supported_optimizers, load_optimizer

    return [spec_for(name, load_optimizer(name)) for name in sorted(get_supported_optimizers())]


@hookimpl
def fmnist_register_optimizers() -> list[OptimizerSpec]:
    return optimizer_specs()
