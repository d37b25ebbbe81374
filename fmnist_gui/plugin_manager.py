"""Plugin discovery and the registry of optimizers and losses.

Three ways in, in this order (earlier wins a name clash):

1. built-ins: the ``fmnist_gui`` entry points of this very distribution
   (``plugins/fmnist_builtins``), found exactly like a third party's;
2. packages: ``fmnist_gui`` entry points of any other installed distribution;
3. files: ``*.py`` files in the user plugin folder (or folders passed in).

Each plugin is imported, registered, validated and asked for its specs on its
own. Whatever goes wrong is recorded on that plugin's ``PluginRecord`` and the
rest carry on: a broken plugin never takes the app down.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Literal

import pluggy

from fmnist_gui import hookspecs
from fmnist_gui.paths import user_plugin_dir
from fmnist_gui.specs import LossSpec, OptimizerSpec

PROJECT = "fmnist_gui"
ENTRY_POINT_GROUP = "fmnist_gui"
OWN_DISTRIBUTION = "fmnist-gui"

Source = Literal["built-in", "package", "file"]
Status = Literal["loaded", "failed", "disabled"]

# hook name -> (spec class, registry attribute on PluginHost)
_SPEC_HOOKS: dict[str, tuple[type, str]] = {
    "fmnist_register_optimizers": (OptimizerSpec, "optimizers"),
    "fmnist_register_losses": (LossSpec, "losses"),
}


class UnknownPluginError(LookupError):
    """A name that no loaded plugin registered; the message lists the known ones."""


@dataclass
class PluginRecord:
    """What the host knows about one plugin, loaded or not."""

    name: str
    source: Source
    location: str
    version: str = ""
    status: Status = "loaded"
    error: str = ""
    traceback: str = ""
    optimizers: list[str] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)
    sha256: str = ""

    def fail(self, message: str, exc: BaseException | None = None) -> None:
        self.status = "failed"
        self.error = message
        if exc is not None:
            self.traceback = "".join(traceback.format_exception(exc))
        self.optimizers.clear()
        self.losses.clear()


class PluginHost:
    """A pluggy ``PluginManager`` plus the specs its plugins registered.

    Make one with ``get_plugin_manager()``; there is no global instance.
    """

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.optimizers: dict[str, OptimizerSpec] = {}
        self.losses: dict[str, LossSpec] = {}

    # ----- lookups ---------------------------------------------------------
    @property
    def errors(self) -> list[PluginRecord]:
        return [r for r in self.records.values() if r.status == "failed"]

    def optimizer(self, name: str) -> OptimizerSpec:
        return self._lookup(self.optimizers, "optimizer", name)

    def loss(self, name: str) -> LossSpec:
        return self._lookup(self.losses, "loss", name)

    @staticmethod
    def _lookup(table: dict, kind: str, name: str):
        try:
            return table[name]
        except KeyError:
            known = ", ".join(sorted(table)) or "none loaded"
            raise UnknownPluginError(
                f"unknown {kind} {name!r} (installed: {known})"
            ) from None

    # ----- loading ---------------------------------------------------------
    def load_entry_points(self, disabled: Iterable[str] = ()) -> None:
        """Register every plugin of the ``fmnist_gui`` entry-point group."""
        disabled = set(disabled)
        eps = sorted(
            importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
            # Our own distribution's built-ins first, so they keep their names.
            key=lambda ep: (_dist_name(ep) != OWN_DISTRIBUTION, ep.name),
        )
        for ep in eps:
            if ep.name in self.records:
                continue  # already loaded (a rescan after a pip install)
            dist = _dist_name(ep)
            record = PluginRecord(
                name=ep.name,
                source="built-in" if dist == OWN_DISTRIBUTION else "package",
                location=f"{dist} ({ep.value})" if dist else ep.value,
                version=ep.dist.version if ep.dist is not None else "",
            )
            self._load(record, ep.load, disabled)

    def load_directory(self, folder: Path, disabled: Iterable[str] = ()) -> None:
        """Register every ``*.py`` file in ``folder`` (a missing folder is no error)."""
        disabled = set(disabled)
        try:
            files = sorted(Path(folder).glob("*.py"))
        except OSError:
            return
        for path in files:
            if not path.name.startswith("_"):
                self.load_file(path, disabled)

    def load_file(self, path: Path, disabled: Iterable[str] = ()) -> PluginRecord:
        """Import one plugin file and register it; the plugin's name is the file stem."""
        path = Path(path)
        record = PluginRecord(name=path.stem, source="file", location=str(path))
        try:
            record.sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            record.fail(f"cannot read {path}: {exc.strerror or exc}", exc)
            self.records[record.name] = record
            return record
        if record.name in self.records:
            record.fail(f"a plugin named {record.name!r} is already loaded; rename the file")
            # Keep the first one's record; report the clash under a distinct key.
            self.records[f"{record.name} ({path})"] = record
            return record
        self._load(record, lambda: _import_file(path), set(disabled))
        return record

    def _load(self, record: PluginRecord, importer, disabled: set[str]) -> None:
        self.records[record.name] = record
        if record.name in disabled:
            record.status = "disabled"
            return
        try:
            plugin = importer()
        except BaseException as exc:  # noqa: BLE001 - SyntaxError, SystemExit, anything
            if isinstance(exc, KeyboardInterrupt):
                raise
            record.fail(f"import failed: {type(exc).__name__}: {exc}", exc)
            return
        try:
            self.pm.register(plugin, name=record.name)
            self.pm.check_pending()
        except Exception as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            record.fail(f"bad hook implementation: {exc}", exc)
            return
        if record.version == "":
            record.version = str(getattr(plugin, "__version__", ""))
        self._collect(record)

    def _collect(self, record: PluginRecord) -> None:
        """Ask one plugin for its specs and add them, or fail the whole plugin."""
        accepted: list[tuple[str, dict, object]] = []
        for hook_name, (spec_cls, attr) in _SPEC_HOOKS.items():
            impls = getattr(self.pm.hook, hook_name).get_hookimpls()
            mine = [i for i in impls if i.plugin_name == record.name]
            if not mine:
                continue
            # Called one plugin at a time (not through pm.hook) so that one
            # plugin raising cannot hide the others' registrations.
            try:
                specs = [s for impl in mine for s in _as_list(impl.function())]
            except TypeError as exc:
                self._withdraw(record, f"{hook_name}(): {exc}", exc)
                return
            except Exception as exc:
                self._withdraw(record, f"{hook_name}() raised {type(exc).__name__}: {exc}", exc)
                return
            table = getattr(self, attr)
            for spec in specs:
                if not isinstance(spec, spec_cls):
                    self._withdraw(
                        record,
                        f"{hook_name}() returned {type(spec).__name__}, "
                        f"expected {spec_cls.__name__}",
                    )
                    return
                clash = spec.name in table or any(
                    a == attr and s.name == spec.name for a, _, s in accepted
                )
                if clash:
                    owner = table[spec.name].plugin if spec.name in table else record.name
                    self._withdraw(
                        record,
                        f"{spec_cls.__name__.removesuffix('Spec').lower()} name "
                        f"{spec.name!r} is already registered by plugin {owner!r}",
                    )
                    return
                accepted.append((attr, table, dataclasses.replace(spec, plugin=record.name)))
        for attr, table, spec in accepted:
            table[spec.name] = spec
            getattr(record, attr).append(spec.name)

    def _withdraw(self, record: PluginRecord, message: str, exc=None) -> None:
        plugin = self.pm.get_plugin(record.name)
        if plugin is not None:
            self.pm.unregister(plugin)
        record.fail(message, exc)


def get_plugin_manager(
    plugin_dirs: Iterable[Path] | None = None,
    *,
    entry_points: bool = True,
    disabled: Iterable[str] = (),
) -> PluginHost:
    """Discover plugins and return a fresh ``PluginHost``.

    ``plugin_dirs`` defaults to the user plugin folder. The app calls this once;
    each test calls it afresh.
    """
    host = PluginHost()
    disabled = set(disabled)
    if entry_points:
        host.load_entry_points(disabled)
    for folder in [user_plugin_dir()] if plugin_dirs is None else plugin_dirs:
        host.load_directory(Path(folder), disabled)
    return host


def _as_list(result: object) -> list:
    if not isinstance(result, (list, tuple)):
        raise TypeError(f"must return a list of specs, got {type(result).__name__}")
    return list(result)


def _dist_name(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ""
    name = dist.metadata["Name"] or ""
    return name.lower().replace("_", "-")


def _import_file(path: Path) -> ModuleType:
    module_name = f"fmnist_gui_user_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    # dataclasses and pickling look the module up while it executes.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module
