"""The derived specs, kept between starts so a warm start need not import the library.

Importing ``pytorch_optimizer`` takes about half a second, most of what the zoo
adds to the app's start. The specs depend only on the library's version and on
the rules in ``derive.py``, so they are written once, as JSON, under the app's
user data folder, and rebuilt from there while both are unchanged. The library
is imported again when an optimizer is built (``ZooFactory``), not before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any

from fmnist_gui import OptimizerSpec, Param
from fmnist_gui.system.fileio import write_atomically
from fmnist_gui.system.paths import user_data_dir
from fmnist_optimizer_zoo import derive

FORMAT = 1


def cache_file() -> Path:
    return user_data_dir() / "plugin-caches" / "fmnist-optimizer-zoo.json"


def cache_key(zoo_version: str) -> str:
    """What the specs are derived from: the library's version, ours, and the rules' code."""
    try:
        library = metadata.version("pytorch-optimizer")
    except metadata.PackageNotFoundError:
        library = "unknown"
    rules = hashlib.sha256(Path(derive.__file__).read_bytes()).hexdigest()[:16]
    return f"format={FORMAT};pytorch-optimizer=={library};zoo=={zoo_version};rules={rules}"


def read(key: str) -> list[OptimizerSpec] | None:
    """The cached specs made under ``key``; None when there are none or they do not load."""
    try:
        saved = json.loads(cache_file().read_text(encoding="utf-8"))
        if saved.get("key") != key:
            return None
        return [_spec_from(entry) for entry in saved["specs"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write(key: str, specs: list[OptimizerSpec]) -> None:
    """Keep ``specs`` for the next start; a folder that cannot be written only costs speed."""
    data = json.dumps({"key": key, "specs": [_entry_of(s) for s in specs]}, indent=1)
    target = cache_file()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, lambda f: f.write(data.encode("utf-8")))
    except OSError:
        pass


def _entry_of(spec: OptimizerSpec) -> dict[str, Any]:
    factory = spec.factory
    assert isinstance(factory, derive.ZooFactory)
    return {
        "name": spec.name,
        "label": spec.label,
        "description": spec.description,
        "library_name": factory.library_name,
        "refusal": factory.refusal,
        "params": [dataclasses.asdict(p) for p in spec.params],
    }


def _spec_from(entry: dict[str, Any]) -> OptimizerSpec:
    params = []
    for fields in entry["params"]:
        if fields["kind"] == "floats":
            fields = {**fields, "default": tuple(fields["default"])}
        params.append(Param(**fields))
    return OptimizerSpec(
        name=entry["name"],
        label=entry["label"],
        factory=derive.ZooFactory(entry["library_name"], entry["refusal"]),
        params=tuple(params),
        description=entry["description"],
    )
