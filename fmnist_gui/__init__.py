"""fmnist-gui: the PyTorch tutorial "Optimizing Model Parameters" as a desktop app.

Plugin authors need only this module::

    from fmnist_gui import hookimpl, OptimizerSpec, LossSpec, SchedulerSpec, Param

Nothing here imports torch or Qt, so importing the package is cheap.
"""

from fmnist_gui.plugins.hookspecs import hookimpl, hookspec
from fmnist_gui.plugins.specs import LossSpec, OptimizerSpec, Param, SchedulerSpec

__version__ = "0.1.0"
PROJECT_NAME = "fmnist_gui"

__all__ = [
    "PROJECT_NAME",
    "LossSpec",
    "OptimizerSpec",
    "Param",
    "SchedulerSpec",
    "__version__",
    "hookimpl",
    "hookspec",
]
