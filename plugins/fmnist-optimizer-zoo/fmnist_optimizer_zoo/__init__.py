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
__all__ = [
    "PREFIX",
    "UnsupportedOptimizerError",
    "derive_specs",
    "fmnist_register_optimizers",
    "optimizer_specs",
]


def optimizer_specs() -> list[OptimizerSpec]:
    """One spec per optimizer ``pytorch_optimizer.get_supported_optimizers()`` names.

    Derived once per version of the library (and of these rules), then read
    back from the cache (``fmnist_optimizer_zoo.cache``) without importing it.
    """
    from fmnist_optimizer_zoo import cache

    key = cache.cache_key(__version__)
    specs = cache.read(key)
    if specs is None:
        specs = derive_specs()
        cache.write(key, specs)
    return specs


def derive_specs() -> list[OptimizerSpec]:
    """The specs, derived from the library's classes now (imports it)."""
    from pytorch_optimizer import get_supported_optimizers, load_optimizer

    return [spec_for(name, load_optimizer(name)) for name in sorted(get_supported_optimizers())]


@hookimpl
def fmnist_register_optimizers() -> list[OptimizerSpec]:
    return optimizer_specs()
