"""Checkpoints: save and load a training so that it continues bit for bit.

No Qt here; the CLI and the desktop app both use this package, as
``from fmnist_gui import checkpoint as ckpt; ckpt.save_checkpoint(...)``.

* ``files``: atomic saves, ``torch.load(weights_only=True)`` loads with a size
  cap, weights export and import, a ``Trainer`` from a checkpoint;
* ``schema``: what a checkpoint file holds and the check of a loaded one;
* ``autosave``: one autosave per app session, and recovery after a crash.
"""

from __future__ import annotations

from fmnist_gui.checkpoint.autosave import (
    Recoverable,
    autosave,
    autosave_dir,
    autosave_path,
    discard_autosave,
    find_recoverable_autosaves,
)
from fmnist_gui.checkpoint.files import (
    MAX_CHECKPOINT_BYTES,
    SUFFIX,
    MissingPluginError,
    export_weights,
    load_trainer,
    load_weights,
    read_checkpoint,
    save_checkpoint,
    trainer_from_checkpoint,
)
from fmnist_gui.checkpoint.schema import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    CheckpointFile,
    check_checkpoint,
    check_model_state,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_CHECKPOINT_BYTES",
    "SUFFIX",
    "CheckpointError",
    "CheckpointFile",
    "MissingPluginError",
    "Recoverable",
    "autosave",
    "autosave_dir",
    "autosave_path",
    "check_checkpoint",
    "check_model_state",
    "discard_autosave",
    "export_weights",
    "find_recoverable_autosaves",
    "load_trainer",
    "load_weights",
    "read_checkpoint",
    "save_checkpoint",
    "trainer_from_checkpoint",
]
