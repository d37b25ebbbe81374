"""Plugin discovery and the registry of optimizers and losses.

Three ways in, in this order (earlier wins a name clash):

1. built-ins: the ``fmnist_gui`` entry points of this very distribution
   (``plugins/fmnist_builtins``), found exactly like a third party's;
2. packages: ``fmnist_gui`` entry points of any other installed distribution;
3. files: ``*.py`` files in the user plugin folder (or folders passed in).

Each plugin is imported, registered, validated (``check_pending()``), asked
for its specs and self-tested (``fmnist_gui.plugins.selftest``) on its own. Whatever
goes wrong is recorded on that plugin's ``PluginRecord`` (message and
traceback) and the rest carry on: a broken plugin never takes the app down,
as in npe2.

Files in the user plugin folder run only once the user approved their SHA-256
(``PluginSettings.trusted_files``, see ``fmnist_gui.plugins.installer``); a file that
changed since is left ``untrusted`` until approved again. Folders passed in
explicitly (tests, ``fmnist-train --plugin-dir``) count as chosen by the user.

Plugin code can fail in ways no ``except`` sees. With a ``Prober``
(``get_plugin_manager(probe=True)``), each third-party plugin is first tried in a
separate process (``fmnist_gui.plugins.probe``) and not imported if that process
died or hung. ``get_plugin_manager`` also leaves a marker while it loads
(``fmnist_gui.plugins.safemode``), so the next start can tell that this one died
and offer safe mode: built-ins only.

``rescan()`` finds packages pip installed after start-up, without a restart.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.metadata
import os
import re
import site
import sys
import sysconfig
import traceback
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import pluggy

from fmnist_gui.errors import FmnistError
from fmnist_gui.plugins import hookspecs, safemode
from fmnist_gui.plugins.boundary import describe, from_plugin
from fmnist_gui.plugins.probe import Prober, ProbeTarget, Verdict
from fmnist_gui.plugins.selftest import SelfTestCache
from fmnist_gui.plugins.specs import LossSpec, OptimizerSpec, SchedulerSpec
from fmnist_gui.system.paths import user_plugin_dir

PROJECT = "fmnist_gui"
ENTRY_POINT_GROUP = "fmnist_gui"
OWN_DISTRIBUTION = "fmnist-gui"
FILE_MODULE_PREFIX = "fmnist_gui_user_plugin_"

# The built-ins' entry points (pyproject.toml). An editable install keeps the
# entry points it was installed with, so a built-in added since is loaded from
# its module until the next install lists it.
BUILTIN_MODULES = {
    "builtin_optimizers": "fmnist_builtins.optimizers",
    "builtin_losses": "fmnist_builtins.losses",
    "builtin_schedulers": "fmnist_builtins.schedulers",
}

SAFE_MODE_NOTE = (
    "not loaded: safe mode (built-in plugins only); fix or remove this plugin, "
    "then start again normally"
)

Source = Literal["built-in", "package", "file"]
Status = Literal["loaded", "failed", "disabled", "untrusted"]

# hook name -> (spec class, registry attribute on PluginHost, kind word)
_SPEC_HOOKS: dict[str, tuple[type[OptimizerSpec | LossSpec | SchedulerSpec], str, str]] = {
    "fmnist_register_optimizers": (OptimizerSpec, "optimizers", "optimizer"),
    "fmnist_register_losses": (LossSpec, "losses", "loss"),
    "fmnist_register_schedulers": (SchedulerSpec, "schedulers", "scheduler"),
}


_ATTR_OF_KIND = {kind: attr for _, attr, kind in _SPEC_HOOKS.values()}


class UnknownPluginError(FmnistError, LookupError):
    """A name that no loaded plugin registered; the message lists the known ones."""


@dataclass
class PluginRecord:
    """What the host knows about one plugin, loaded or not.

    ``error`` is one line for tables; ``traceback`` the full story. A plugin
    whose specs partly failed the self-test stays ``loaded`` with the
    rejected ones in ``rejected`` (spec name -> reason) and in ``error``.
    """

    name: str
    source: Source
    location: str
    version: str = ""
    status: Status = "loaded"
    error: str = ""
    traceback: str = ""
    optimizers: list[str] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)
    schedulers: list[str] = field(default_factory=list)
    sha256: str = ""
    rejected: dict[str, str] = field(default_factory=dict)
    selftest_seconds: dict[str, float] = field(default_factory=dict)
    #: ``kind:name`` of the specs held back because the user disabled them.
    disabled_specs: list[str] = field(default_factory=list)
    #: ``kind:name`` -> label of every spec the plugin registered, in its order.
    registered: dict[str, str] = field(default_factory=dict)

    @property
    def provides(self) -> list[str]:
        """``optimizer:NAME`` / ``loss:NAME`` / ``scheduler:NAME`` for everything it offers."""
        return [
            *(f"optimizer:{n}" for n in self.optimizers),
            *(f"loss:{n}" for n in self.losses),
            *(f"scheduler:{n}" for n in self.schedulers),
        ]

    @property
    def removable(self) -> bool:
        """Only plugin files can be removed from inside the app; packages via pip."""
        return self.source == "file"

    def fail(self, message: str, exc: BaseException | None = None) -> None:
        self.status = "failed"
        self.error = " ".join(message.split())  # one line for tables and the CLI
        self.traceback = "".join(traceback.format_exception(exc)) if exc is not None else message
        self.optimizers.clear()
        self.losses.clear()
        self.schedulers.clear()
        self.disabled_specs.clear()

    def reset(self) -> None:
        self.status, self.error, self.traceback = "loaded", "", ""
        self.optimizers.clear()
        self.losses.clear()
        self.schedulers.clear()
        self.rejected.clear()
        self.selftest_seconds.clear()
        self.disabled_specs.clear()
        self.registered.clear()


SpecState = Literal["offered", "refused", "disabled"]


@dataclass(frozen=True)
class SpecStatus:
    """One spec a loaded plugin registered, as the plugin manager lists it."""

    plugin: str
    kind: str
    name: str
    label: str
    status: SpecState
    reason: str = ""
    seconds: float | None = None  # its self-test's time (None: not self-tested)

    @property
    def key(self) -> str:
        """``kind:name``, as ``PluginSettings.disabled_specs`` stores it."""
        return spec_key(self.kind, self.name)


def spec_key(kind: str, name: str) -> str:
    """How a single spec is named in the settings and ``PluginHost.disabled_specs``."""
    return f"{kind}:{name}"


@dataclass
class RescanReport:
    """What ``rescan()`` found: new plugins, and changes only a restart can apply."""

    loaded: list[PluginRecord] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)
    new_paths: list[str] = field(default_factory=list)
    #: Package plugins whose distribution is no longer installed (they were unloaded).
    removed: list[PluginRecord] = field(default_factory=list)


class PluginHost:
    """A pluggy ``PluginManager`` plus the specs its plugins registered.

    Make one with ``get_plugin_manager()``; there is no global instance.
    ``trusted`` maps plugin file names to approved SHA-256s for folders loaded
    with ``load_directory(..., require_approval=True)``. With a ``prober``,
    third-party plugins are imported only after a separate process survived
    importing them. In ``safe_mode`` only built-ins load; the others get a
    ``disabled`` record saying so. With a ``selftest_cache``, a spec whose
    plugin and schema were checked before is not checked again;
    ``selftests_run`` counts the checks this host really ran. ``disabled_specs``
    (``kind:name``, see ``spec_key``) are single specs the user turned off: their
    plugin loads, but they are not offered (nor self-tested) until enabled.
    """

    def __init__(
        self,
        *,
        selftest: bool = True,
        disabled: Iterable[str] = (),
        trusted: Mapping[str, str] | None = None,
        prober: Prober | None = None,
        safe_mode: bool = False,
        selftest_cache: SelfTestCache | None = None,
        disabled_specs: Iterable[str] = (),
    ) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.selftest = selftest
        self.disabled: set[str] = set(disabled)
        self.disabled_specs: set[str] = set(disabled_specs)
        # kind:name -> (record key, registry attribute, spec) of the specs held back.
        self._held: dict[str, tuple[str, str, Any]] = {}
        self.trusted: dict[str, str] = dict(trusted or {})
        self.prober = prober
        self.safe_mode = safe_mode
        #: Called with each record just before its plugin's code first runs.
        self.on_load: Callable[[PluginRecord], object] | None = None
        #: Called as ``(done, total, plugin)`` before each self-test that really runs.
        self.on_selftest: Callable[[int, int, str], object] | None = None
        self.selftest_cache = selftest_cache
        self.selftests_run = 0
        # Plugin name -> what identifies its code in the self-test cache ("" = not cached).
        self._code_ids: dict[str, str] = {}
        self.records: dict[str, PluginRecord] = {}
        self.optimizers: dict[str, OptimizerSpec] = {}
        self.losses: dict[str, LossSpec] = {}
        self.schedulers: dict[str, SchedulerSpec] = {}
        #: Problems not tied to one plugin (an unreadable plugin folder, say).
        self.warnings: list[str] = []
        self._loaders: dict[str, Callable[[], object]] = {}
        # What the prober must have passed before a loader may run (third parties only).
        self._probe_targets: dict[str, ProbeTarget] = {}
        self._verdicts: dict[str, Verdict] = {}
        self._entry_point_ids: dict[str, tuple[str, str, str]] = {}
        self._rejected: dict[tuple[str, str], str] = {}

    # ----- lookups ---------------------------------------------------------
    @property
    def errors(self) -> list[PluginRecord]:
        """Records with something to show: failed, untrusted, or with rejected specs."""
        return [r for r in self.records.values() if r.error]

    def optimizer(self, name: str) -> OptimizerSpec:
        return self._lookup(self.optimizers, "optimizer", name)

    def loss(self, name: str) -> LossSpec:
        return self._lookup(self.losses, "loss", name)

    def scheduler(self, name: str) -> SchedulerSpec:
        return self._lookup(self.schedulers, "scheduler", name)

    def _lookup(self, table: dict, kind: str, name: str):
        try:
            return table[name]
        except KeyError:
            if spec_key(kind, name) in self._held:
                raise UnknownPluginError(
                    f"{kind} {name!r} is disabled; enable it again in Plugins → Manage "
                    "plugins… (or remove it from disabled_specs in the plugin settings)"
                ) from None
            if (kind, name) in self._rejected:
                raise UnknownPluginError(
                    f"{kind} {name!r} is not offered: {self._rejected[kind, name]}"
                ) from None
            known = ", ".join(sorted(table)) or "none loaded"
            raise UnknownPluginError(f"unknown {kind} {name!r} (installed: {known})") from None

    # ----- loading ---------------------------------------------------------
    def load_entry_points(
        self, disabled: Iterable[str] = (), *, distributions: Collection[str] | None = None
    ) -> list[PluginRecord]:
        """Register every plugin of the ``fmnist_gui`` entry-point group not loaded yet.

        Returns the records it added. Safe to call again after a ``pip install``
        (``rescan()`` does): known entry points are skipped, failed ones retried.
        ``distributions`` limits it to those distributions' entry points.
        """
        self.disabled |= set(disabled)
        eps = self._entry_points(distributions)
        if self.probing:
            self._probe(self._entry_point_targets(eps))
        added = []
        for ep in eps:
            dist = _dist_name(ep)
            identity = (ep.name, dist, ep.value)
            known = [k for k, ident in self._entry_point_ids.items() if ident == identity]
            if dist == OWN_DISTRIBUTION and ep.name in self.records and not known:
                continue  # loaded from BUILTIN_MODULES before a reinstall listed it
            if known:
                record = self.records[known[0]]
                if record.status != "failed" or record.error.startswith("a plugin named"):
                    continue
                self._forget(known[0])  # retry: pip may have installed what it lacked
            record = PluginRecord(
                name=ep.name,
                source="built-in" if dist == OWN_DISTRIBUTION else "package",
                location=f"{dist} ({ep.value})" if dist else ep.value,
                version=_dist_version(ep),
            )
            key = self._add_record(record)
            self._entry_point_ids[key] = identity
            if key == record.name:
                self._loaders[key] = ep.load
                self._code_ids[key] = (
                    f"dist:{dist}=={record.version}{_requirement_versions(ep)}" if dist else ""
                )
                if dist and dist != OWN_DISTRIBUTION:
                    self._probe_targets[key] = ProbeTarget.for_distribution(dist, record.version)
                self._load(record, ep.load)
            added.append(record)
        if distributions is None or OWN_DISTRIBUTION in distributions:
            added += self._load_unlisted_builtins()
        return added

    def _load_unlisted_builtins(self) -> list[PluginRecord]:
        added = []
        for name, module in BUILTIN_MODULES.items():
            if name in self.records:
                continue
            record = PluginRecord(
                name=name,
                source="built-in",
                location=f"{OWN_DISTRIBUTION} ({module})",
                version=_own_version(),
            )
            self._add_record(record)
            self._loaders[name] = functools.partial(importlib.import_module, module)
            self._load(record, self._loaders[name])
            added.append(record)
        return added

    def _entry_points(self, distributions: Collection[str] | None = None) -> list:
        """The group's entry points, built-ins first; ``[]`` with a warning if unreadable."""
        try:
            eps = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
        except Exception as exc:  # noqa: BLE001 - any distribution may have broken metadata
            self.warnings.append(
                f"could not list installed packages' plugins: {type(exc).__name__}: {exc}"
            )
            return []
        if distributions is not None:
            eps = [ep for ep in eps if _dist_name(ep) in distributions]
        # Our own distribution's built-ins first, so they keep their names;
        # then the others by name, so a clash always resolves the same way.
        eps.sort(key=lambda ep: (_dist_name(ep) != OWN_DISTRIBUTION, ep.name, _dist_name(ep)))
        return eps

    def _entry_point_targets(self, eps: list) -> list[ProbeTarget]:
        """The third-party distributions among ``eps`` whose plugins would be imported."""
        targets = []
        for ep in eps:
            dist = _dist_name(ep)
            if dist and dist != OWN_DISTRIBUTION and ep.name not in self.disabled:
                targets.append(ProbeTarget.for_distribution(dist, _dist_version(ep)))
        return targets

    def load_directory(
        self, folder: Path, disabled: Iterable[str] = (), *, require_approval: bool = False
    ) -> list[PluginRecord]:
        """Register every ``*.py`` file in ``folder`` (a missing folder is no error).

        With ``require_approval``, a file runs only if its SHA-256 is in
        ``self.trusted``; otherwise its record is ``untrusted``.
        """
        self.disabled |= set(disabled)
        folder = Path(folder)
        try:
            files = sorted(p for p in folder.iterdir() if p.suffix == ".py")
        except FileNotFoundError:
            return []  # no plugin installed yet; the installer creates it
        except OSError as exc:
            self.warnings.append(
                f"plugin folder {folder} cannot be read: "
                f"{exc.strerror or exc}; its plugins were not loaded"
            )
            return []
        files = [p for p in files if not p.name.startswith("_")]
        if self.probing:
            self._probe(self._file_targets(files, require_approval=require_approval))
        return [self.load_file(p, require_approval=require_approval) for p in files]

    def _file_targets(self, files: list[Path], *, require_approval: bool) -> list[ProbeTarget]:
        """The files among ``files`` that ``load_file`` would import."""
        targets = []
        for path in files:
            if path.stem in self.disabled:
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue  # load_file reports it
            sha256 = hashlib.sha256(data).hexdigest()
            if not require_approval or self.trusted.get(path.name) == sha256:
                targets.append(ProbeTarget.for_file(path, data, sha256))
        return targets

    def load_file(
        self,
        path: Path,
        disabled: Iterable[str] = (),
        *,
        require_approval: bool = False,
        data: bytes | None = None,
    ) -> PluginRecord:
        """Import one plugin file and register it; the plugin's name is the file stem.

        The code run is compiled from the very bytes that were hashed, so an
        approved hash always matches what executes. ``data`` are those bytes
        when the caller has already read them.
        """
        self.disabled |= set(disabled)
        path = Path(path)
        record = PluginRecord(name=path.stem, source="file", location=str(path))
        try:
            if data is None:
                data = path.read_bytes()
        except OSError as exc:
            record.fail(f"cannot read {path}: {exc.strerror or exc}", exc)
            self._add_record(record)
            return record
        record.sha256 = hashlib.sha256(data).hexdigest()
        if self._add_record(record) != record.name:
            return record
        approved = self.trusted.get(path.name)
        if require_approval and approved != record.sha256:
            record.status = "untrusted"
            how = (
                "approve it in the app (Plugins → Manage plugins…) or load its folder "
                "with fmnist-train --plugin-dir"
            )
            record.error = (
                f"{path.name} changed since you approved it (SHA-256 now "
                f"{record.sha256[:16]}…); {how}"
                if approved
                else f"{path.name} was not approved yet (SHA-256 {record.sha256[:16]}…); {how}"
            )
            # No loader is kept: only approve() may ever run this file.
            return record
        self._loaders[record.name] = lambda: _import_source(path, data)
        self._code_ids[record.name] = f"file:{record.sha256}"
        self._probe_targets[record.name] = ProbeTarget.for_file(path, data, record.sha256)
        self._load(record, self._loaders[record.name])
        return record

    def load_plugin(
        self,
        plugin: object,
        name: str,
        *,
        source: Source = "package",
        location: str = "",
        version: str = "",
    ) -> PluginRecord:
        """Register an already imported plugin object (a module, a class instance).

        Handy in a plugin's own tests: ``host.load_plugin(my_module, "mine")``.
        """
        record = PluginRecord(
            name=name, source=source, location=location or repr(plugin), version=version
        )
        if self._add_record(record) == name:
            self._loaders[name] = lambda: plugin
            self._load(record, self._loaders[name])
        return record

    def _add_record(self, record: PluginRecord) -> str:
        """Store ``record``; on a name clash fail it and store it under a distinct key."""
        if record.name not in self.records:
            self.records[record.name] = record
            return record.name
        owner = self.records[record.name]
        record.fail(
            f"a plugin named {record.name!r} is already loaded from {owner.location}; "
            "rename this one"
        )
        key = f"{record.name} ({record.location})"
        self.records[key] = record
        return key

    def _load(self, record: PluginRecord, importer: Callable[[], object]) -> None:
        """Import, register, validate and collect one plugin; failures go on ``record``.

        Every ``BaseException`` from the plugin's code is its failure (``SystemExit``
        and its own ``KeyboardInterrupt`` included); only a real Ctrl-C propagates.
        """
        if record.name in self.disabled:
            record.status = "disabled"
            return
        if self.safe_mode and record.source != "built-in":
            record.status, record.error = "disabled", SAFE_MODE_NOTE
            record.traceback = record.error
            return
        if self._refused_by_probe(record):
            return
        if self.on_load is not None:
            self.on_load(record)
        try:
            plugin = importer()
        except BaseException as exc:  # SyntaxError, SystemExit, anything
            if not from_plugin(exc):
                raise
            record.fail(f"import failed: {describe(exc)}", exc)
            return
        try:
            self.pm.register(plugin, name=record.name)
            # An unknown fmnist_* hook (a typo) is only caught here.
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self._unregister(record.name, plugin)
            record.fail(f"bad hook implementation: {exc}", exc)
            return
        except BaseException as exc:  # ValueError: the module registered under another name
            # pluggy reads the plugin's attributes, which the plugin's own code may compute.
            if not from_plugin(exc):
                raise
            self._unregister(record.name, plugin)
            record.fail(f"cannot register: {describe(exc)}", exc)
            return
        if not self.pm.get_hookcallers(plugin):
            self.pm.unregister(name=record.name)
            record.fail(
                "defines no hook implementation: decorate its fmnist_register_* "
                "functions with @hookimpl (from fmnist_gui import hookimpl)"
            )
            return
        try:
            if record.version == "":
                record.version = str(getattr(plugin, "__version__", ""))
            accepted = self._gather(record)
        except BaseException as exc:  # a __version__ or a spec computed by the plugin's code
            if not from_plugin(exc):
                raise
            self._withdraw(record, f"its specs could not be read: {describe(exc)}", exc)
            return
        if accepted is not None:
            self._identify(record, plugin)
            self._collect(record, accepted)
            if self.selftest_cache is not None:
                self.selftest_cache.flush()

    def _identify(self, record: PluginRecord, plugin: object) -> None:
        """Pin a package plugin's cache identity to its module's bytes, not only the version.

        A version is what the cache is keyed by, but an editable install or a
        checkout (the built-ins in development) changes code without a new version.
        """
        base = self._code_ids.get(record.name, "")
        if not base.startswith("dist:"):
            return
        module_file = getattr(plugin, "__file__", None)
        try:
            digest = (
                hashlib.sha256(Path(module_file).read_bytes()).hexdigest() if module_file else ""
            )
        except OSError:
            digest = ""
        self._code_ids[record.name] = f"{base.split('#')[0]}#{digest}"

    def _refused_by_probe(self, record: PluginRecord) -> bool:
        """Fail ``record`` if a trial of its plugin in a separate process did not survive."""
        target = self._probe_targets.get(record.name)
        if not self.probing or target is None:
            return False
        self._probe([target])
        verdict = self._verdicts.get(target.key)
        if verdict is None or verdict.ok:
            return False
        changed = "a changed file" if target.path else "a new version"
        record.fail(
            "not loaded: a separate process that imported and self-tested it first "
            f"{verdict.reason}, so loading it here could end the app too; fix or remove "
            f"the plugin ({changed} is tried again)"
        )
        return True

    @property
    def probing(self) -> bool:
        """Whether third-party plugins are tried in a separate process before import."""
        return self.prober is not None and not self.safe_mode

    def _probe(self, targets: Iterable[ProbeTarget]) -> None:
        """Have the prober decide, all in one go, on ``targets`` not decided yet."""
        prober = self.prober
        if prober is None or not self.probing:
            return
        todo = {t.key: t for t in targets if t.key not in self._verdicts}
        if not todo:
            return
        verdicts, problem = prober.verdicts(todo.values())
        self._verdicts.update(verdicts)
        if problem:
            self.warnings.append(
                f"plugins could not be tried in a separate process first: {problem}; "
                "they were loaded without that check"
            )
            for key in todo:  # once per host, not once per plugin
                self._verdicts.setdefault(key, Verdict(True))

    def _gather(self, record: PluginRecord) -> list[tuple[str, str, Any]] | None:
        """Ask one plugin for its specs and check them; None once it was withdrawn."""
        accepted: list[tuple[str, str, Any]] = []
        for hook_name, (spec_cls, attr, kind) in _SPEC_HOOKS.items():
            impls = getattr(self.pm.hook, hook_name).get_hookimpls()
            mine = [i for i in impls if i.plugin_name == record.name]
            # Called one plugin at a time (not through pm.hook) so that one
            # plugin raising cannot hide the others' registrations.
            try:
                specs = [s for impl in mine for s in _as_list(impl.function())]
            except BaseException as exc:
                if not from_plugin(exc):
                    raise
                self._withdraw(record, f"{hook_name}() raised {describe(exc)}", exc)
                return None
            table = getattr(self, attr)
            for spec in specs:
                if not isinstance(spec, spec_cls):
                    self._withdraw(
                        record,
                        f"{hook_name}() returned {type(spec).__name__}, "
                        f"expected {spec_cls.__name__}",
                    )
                    return None
                clash = spec.name in table or any(
                    a == attr and s.name == spec.name for a, _, s in accepted
                )
                if clash:
                    owner = table[spec.name].plugin if spec.name in table else record.name
                    self._withdraw(
                        record,
                        f"{kind} name {spec.name!r} is already registered "
                        f"by plugin {owner!r}; rename it",
                    )
                    return None
                accepted.append((attr, kind, dataclasses.replace(spec, plugin=record.name)))
        return accepted

    def _collect(self, record: PluginRecord, accepted: list[tuple[str, str, Any]]) -> None:
        """Self-test the specs ``_gather`` accepted and add those that pass.

        Specs the user disabled are held back untested (a cached time is still shown).
        """
        for _, kind, spec in accepted:
            record.registered[spec_key(kind, spec.name)] = spec.label or spec.name
        known = self._cached_results(record, accepted)
        todo = sum(
            1
            for _, kind, spec in accepted
            if (kind, spec.name) not in known
            and spec_key(kind, spec.name) not in self.disabled_specs
        )
        done = 0
        for attr, kind, spec in accepted:
            key = spec_key(kind, spec.name)
            if key in self.disabled_specs:
                record.disabled_specs.append(key)
                self._held[key] = (record.name, attr, spec)
                continue
            if (kind, spec.name) in known:
                reason = known[kind, spec.name]
            else:
                if self.on_selftest is not None and self.selftest:
                    self.on_selftest(done, todo, record.name)
                done += 1
                reason = self._selftest(record, kind, spec)
            self._offer(record, attr, kind, spec, reason)
        if record.rejected:
            message = "; ".join(f"{n}: {r}" for n, r in record.rejected.items())
            if record.optimizers or record.losses or record.schedulers or record.disabled_specs:
                record.error = " ".join(f"not offered (self-test failed): {message}".split())
                record.traceback = record.error
            else:
                self._withdraw(record, f"self-test failed: {message}")

    def _offer(self, record: PluginRecord, attr: str, kind: str, spec: Any, reason: str) -> None:
        """Add ``spec`` to the registry, or note why not (``reason``: its failed self-test)."""
        if reason:
            record.rejected[spec.name] = reason
            self._rejected[kind, spec.name] = f"plugin {record.name!r}: {reason}"
            return
        getattr(self, attr)[spec.name] = spec
        getattr(record, attr).append(spec.name)

    def _cached_results(
        self, record: PluginRecord, accepted: list[tuple[str, str, Any]]
    ) -> dict[tuple[str, str], str]:
        """``(kind, name) -> reason`` ("" = passed) for the specs the cache already knows."""
        cache = self.selftest_cache
        if not self.selftest or cache is None:
            return {}
        identity = self._code_ids.get(record.name, "")
        known = {}
        for _, kind, spec in accepted:
            result = cache.get(cache.key(identity, kind, spec))
            if result is not None:
                record.selftest_seconds[spec.name] = result.seconds
                known[kind, spec.name] = (
                    "" if result.ok else f"{kind} {spec.name!r}: {result.reason}"
                )
        return known

    def _selftest(self, record: PluginRecord, kind: str, spec: Any) -> str:
        """Empty when ``spec`` passes (or self-tests are off), else the reason."""
        if not self.selftest:
            return ""
        from fmnist_gui.plugins import selftest
        from fmnist_gui.plugins.schedcheck import check_scheduler

        checks: dict[str, Callable[[Any], selftest.SelfTestResult]] = {
            "optimizer": selftest.check_optimizer,
            "loss": selftest.check_loss,
            "scheduler": check_scheduler,
        }
        check = checks[kind]
        self.selftests_run += 1
        try:
            result = check(spec)
        except BaseException as exc:  # the check itself must never take the host down
            if not from_plugin(exc):
                raise
            return f"self-test crashed: {describe(exc)}"
        record.selftest_seconds[spec.name] = result.seconds
        if self.selftest_cache is not None:
            identity = self._code_ids.get(record.name, "")
            self.selftest_cache.put(self.selftest_cache.key(identity, kind, spec), result)
        return "" if result.ok else f"{kind} {spec.name!r}: {result.reason}"

    def _withdraw(self, record: PluginRecord, message: str, exc=None) -> None:
        self._unregister(record.name)
        self._release_held(record)
        record.fail(message, exc)

    def _release_held(self, record: PluginRecord) -> None:
        for key in record.disabled_specs:
            if self._held.get(key, ("",))[0] == record.name:
                del self._held[key]

    def _unregister(self, name: str, plugin: object = None) -> None:
        """Unregister ``name`` (only if it is ``plugin``, when given)."""
        registered = self.pm.get_plugin(name)
        if registered is not None and (plugin is None or registered is plugin):
            self.pm.unregister(name=name)

    # ----- changing what is loaded (the plugin manager dialog) ---------------
    def disable(self, name: str) -> PluginRecord:
        """Stop offering plugin ``name``'s specs now; its code stays imported."""
        record = self.records[name]
        self._unload(record)
        record.reset()
        record.status = "disabled"
        self.disabled.add(name)
        return record

    def enable(self, name: str) -> PluginRecord:
        """Load a disabled (or failed) plugin now, no restart."""
        record = self.records[name]
        self.disabled.discard(name)
        if record.status in ("loaded", "untrusted") or name not in self._loaders:
            if record.source == "file" and name not in self._loaders:
                record.status = "untrusted"  # it needs approve(), not enable()
            return record
        self._unload(record)
        record.reset()
        self._load(record, self._loaders[name])
        return record

    def disable_spec(self, kind: str, name: str) -> PluginRecord | None:
        """Stop offering one spec now; its plugin stays loaded. Returns the plugin's record.

        The choice holds for specs not loaded yet too (a disabled plugin's, say).
        """
        key = spec_key(kind, name)
        self.disabled_specs.add(key)
        if key in self._held:
            return self.records[self._held[key][0]]
        attr = _ATTR_OF_KIND[kind]
        spec = getattr(self, attr).get(name)
        record = self.records.get(getattr(spec, "plugin", "")) if spec is not None else None
        if spec is None or record is None:
            return None
        del getattr(self, attr)[name]
        getattr(record, attr).remove(name)
        record.disabled_specs.append(key)
        self._held[key] = (record.name, attr, spec)
        return record

    def enable_spec(self, kind: str, name: str) -> PluginRecord | None:
        """Offer a disabled spec again now, after its self-test (cached or run here)."""
        key = spec_key(kind, name)
        self.disabled_specs.discard(key)
        held = self._held.pop(key, None)
        if held is None:
            return None
        record_key, attr, spec = held
        record = self.records[record_key]
        record.disabled_specs.remove(key)
        known = self._cached_results(record, [(attr, kind, spec)])
        if (kind, name) in known:
            reason = known[kind, name]
        else:
            if self.on_selftest is not None and self.selftest:
                self.on_selftest(0, 1, record.name)
            reason = self._selftest(record, kind, spec)
            if self.selftest_cache is not None:
                self.selftest_cache.flush()
        self._offer(record, attr, kind, spec, reason)
        if reason:
            message = "; ".join(f"{n}: {r}" for n, r in record.rejected.items())
            record.error = " ".join(f"not offered (self-test failed): {message}".split())
            record.traceback = record.error
        return record

    def spec_statuses(self) -> list[SpecStatus]:
        """Every spec of every loaded plugin: offered, refused (with why) or disabled."""
        rows = []
        for record in self.records.values():
            for key, label in record.registered.items():
                kind, name = key.split(":", 1)
                seconds = record.selftest_seconds.get(name)
                if key in record.disabled_specs:
                    status: SpecState = "disabled"
                    reason = "disabled by you"
                elif name in getattr(record, _ATTR_OF_KIND[kind]):
                    status, reason = "offered", ""
                elif name in record.rejected:
                    status, reason = "refused", record.rejected[name]
                    reason = reason.removeprefix(f"{kind} {name!r}: ")
                else:
                    continue  # withdrawn with its plugin
                rows.append(SpecStatus(record.name, kind, name, label, status, reason, seconds))
        return rows

    def approve(self, name: str, sha256: str) -> PluginRecord:
        """Trust file plugin ``name`` at ``sha256`` (the hash the user was shown) and load it.

        The file is read again; if its hash is no longer ``sha256``, it stays untrusted.
        """
        record = self.records[name]
        path = Path(record.location)
        self.trusted[path.name] = sha256
        self.remove(name)
        return self.load_file(path, require_approval=True)

    def remove(self, name: str) -> None:
        """Forget plugin ``name`` entirely (the caller deletes its file, if any)."""
        record = self.records[name]
        owner = self.records.get(record.name) is record  # not a clash record
        self._forget(name)
        if record.source == "file" and owner:
            sys.modules.pop(FILE_MODULE_PREFIX + record.name, None)

    def _unload(self, record: PluginRecord) -> None:
        # A clash record ("name (location)") shares its name with the plugin
        # that pluggy registered: never unregister that one on its behalf.
        if self.records.get(record.name) is record:
            self._unregister(record.name)
        for n in record.optimizers:
            self.optimizers.pop(n, None)
        for n in record.losses:
            self.losses.pop(n, None)
        for n in record.schedulers:
            self.schedulers.pop(n, None)
        self._release_held(record)
        mine = f"plugin {record.name!r}"
        for key in [k for k, why in self._rejected.items() if why.startswith(mine)]:
            del self._rejected[key]

    def _forget(self, key: str) -> None:
        self._unload(self.records[key])
        del self.records[key]
        self._loaders.pop(key, None)
        self._probe_targets.pop(key, None)
        self._entry_point_ids.pop(key, None)
        self._code_ids.pop(key, None)

    # ----- after a pip install -------------------------------------------------
    def rescan(self) -> RescanReport:
        """Find plugins installed since start-up, without a restart.

        Makes new site-packages entries importable (``.pth`` files, a user
        site folder that did not exist), clears importlib's caches, then loads
        new entry points. A package that was upgraded or replaced while its old
        code is imported cannot be swapped in-process: ``restart_needed`` says so.
        Package plugins whose entry point is gone (``pip uninstall``) are unloaded
        and forgotten: ``removed`` lists them.
        """
        report = RescanReport(new_paths=refresh_import_paths())
        try:
            current = {
                (ep.name, _dist_name(ep)): _dist_version(ep)
                for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
            }
        except Exception:  # noqa: BLE001 - unreadable metadata: unload nothing on a guess
            current = None
        if current is not None:
            report.removed = self._drop_uninstalled(current)
        current = current or {}
        before = {k: (r.version, r.location) for k, r in self.records.items()}
        report.loaded = self.load_entry_points()
        for key, (name, dist, _value) in self._entry_point_ids.items():
            if key not in before or (name, dist) not in current:
                continue
            old_version, location = before[key]
            new_version = current[name, dist]
            if new_version != old_version and self.records[key].status == "loaded":
                report.restart_needed.append(
                    f"{dist} was upgraded from {old_version or '?'} to {new_version or '?'} "
                    f"while plugin {name!r} ({location}) was loaded: restart the app to use "
                    "the new version"
                )
        return report

    def _drop_uninstalled(self, current: Mapping[tuple[str, str], str]) -> list[PluginRecord]:
        """Forget the package plugins whose entry point is no longer installed."""
        gone = []
        for key, (name, dist, _value) in list(self._entry_point_ids.items()):
            if dist in ("", OWN_DISTRIBUTION) or (name, dist) in current:
                continue
            record = self.records[key]
            self._forget(key)
            gone.append(record)
        return gone

    def distribution_of(self, name: str) -> str:
        """The installed distribution plugin ``name`` came from ("" for files and built-ins)."""
        ident = self._entry_point_ids.get(name)
        if ident is None or ident[1] == OWN_DISTRIBUTION:
            return ""
        return ident[1]


def get_plugin_manager(
    plugin_dirs: Iterable[Path] | None = None,
    *,
    entry_points: bool = True,
    disabled: Iterable[str] = (),
    selftest: bool = True,
    settings: Any = None,
    probe: bool | Prober = False,
    safe_mode: bool = False,
    selftest_cache: bool | SelfTestCache = False,
    on_selftest: Callable[[int, int, str], object] | None = None,
) -> PluginHost:
    """Discover plugins and return a fresh ``PluginHost``.

    ``plugin_dirs`` defaults to the user plugin folder, whose files must have
    been approved (``settings.trusted_files``); folders passed in explicitly
    load as they are. ``settings`` (a ``PluginSettings``, default: the user's)
    also supplies the disabled plugins. The app calls this once; each test
    calls it afresh.

    ``probe`` (``True`` or a ``Prober``): try each new or changed third-party
    plugin in a separate process first, all in one process; the app and
    ``fmnist-train`` do. ``safe_mode``: load the built-ins only (after a start
    that died while loading plugins, see ``safemode.take_previous_crash()``).
    While loading, a marker names the plugin in progress, for the next start.
    ``selftest_cache`` (``True`` or a ``SelfTestCache``): reuse self-test results
    of earlier starts (the app does); ``on_selftest(done, total, plugin)`` is
    called before each self-test that really runs (progress for the window).
    """
    from fmnist_gui.plugins.installer import PluginSettings

    if settings is None:
        settings = PluginSettings.load()
    host = PluginHost(
        selftest=selftest,
        disabled={*settings.disabled, *disabled},
        disabled_specs=settings.disabled_specs,
        trusted=settings.trusted_files,
        prober=Prober() if probe is True else probe or None,
        safe_mode=safe_mode,
        selftest_cache=SelfTestCache() if selftest_cache is True else selftest_cache or None,
    )
    host.on_selftest = on_selftest
    if settings.problem:
        host.warnings.append(settings.problem)
    if safe_mode:
        host.warnings.append(
            "safe mode: only the built-in plugins were loaded; the others are listed as disabled"
        )
    if plugin_dirs is None:
        folders = [(user_plugin_dir(), True)]
    else:
        folders = [(Path(folder), False) for folder in plugin_dirs]
    with safemode.loading() as marker:
        host.on_load = lambda record: marker.plugin(record.name, record.location)
        if host.probing:
            # One trial process for every new or changed plugin, files and packages alike.
            targets = host._entry_point_targets(host._entry_points()) if entry_points else []
            for folder, approval in folders:
                files = _plugin_files(folder)
                targets += host._file_targets(files, require_approval=approval)
            host._probe(targets)
        if entry_points:
            host.load_entry_points()
        for folder, approval in folders:
            host.load_directory(folder, require_approval=approval)
        host.on_load = None
    return host


def _plugin_files(folder: Path) -> list[Path]:
    """The ``*.py`` plugin files in ``folder``, or none if it cannot be listed."""
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix == ".py")
    except OSError:
        return []
    return [p for p in files if not p.name.startswith("_")]


# ----- import machinery ----------------------------------------------------------
def _site_dirs() -> list[str]:
    dirs = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    if hasattr(site, "getsitepackages"):
        dirs.update(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.add(site.getusersitepackages())
    return sorted(dirs)


def _pth_files() -> set[str]:
    found: set[str] = set()
    for d in _site_dirs():
        try:
            found.update(os.path.join(d, n) for n in os.listdir(d) if n.endswith(".pth"))
        except OSError:
            continue
    return found


# site.py processed these at start-up; rescans process only newer ones.
_PTH_SEEN: set[str] = _pth_files()


def refresh_import_paths() -> list[str]:
    """Make packages installed since start-up importable; return new ``sys.path`` entries.

    pip writes new ``.pth`` files (editable installs, namespace shims) that
    ``site`` reads only at start-up, and may create the user site folder.
    """
    importlib.invalidate_caches()
    before = list(sys.path)
    for d in _site_dirs():
        if os.path.isdir(d) and d not in sys.path:
            site.addsitedir(d)  # e.g. ~/.local/... created by `pip install --user`
    for pth in sorted(_pth_files() - _PTH_SEEN):
        _PTH_SEEN.add(pth)
        try:
            site.addpackage(os.path.dirname(pth), os.path.basename(pth), None)
        except Exception:  # noqa: BLE001 - a broken .pth must not stop the rescan
            continue
    importlib.invalidate_caches()
    return [p for p in sys.path if p not in before]


def _own_version() -> str:
    from fmnist_gui import __version__

    return __version__


def _as_list(result: object) -> list:
    if not isinstance(result, (list, tuple)):
        raise TypeError(f"must return a list of specs, got {type(result).__name__}")
    return list(result)


def _dist_name(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ""
    try:
        name = dist.metadata["Name"] or ""
    except Exception:  # noqa: BLE001 - unreadable METADATA: load the plugin, just unnamed
        return ""
    return name.lower().replace("_", "-")


_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _requirement_versions(ep: importlib.metadata.EntryPoint) -> str:
    """``;name==version`` for each installed requirement of ``ep``'s distribution.

    Part of the self-test cache identity: a plugin that wraps a library
    (the zoo wraps pytorch-optimizer) behaves as that library's version does,
    so upgrading it must check the specs again even if the plugin is unchanged.
    """
    dist = getattr(ep, "dist", None)
    try:
        requires = (dist.requires or []) if dist is not None else []
    except Exception:  # noqa: BLE001 - unreadable METADATA: key on the version alone
        return ""
    found = []
    for requirement in requires:
        if "extra ==" in requirement.replace('"', "").replace("'", ""):
            continue  # an optional extra: not what the plugin runs on
        match = _REQUIREMENT_NAME.match(requirement)
        if match is None:
            continue
        name = match.group(1).lower().replace("_", "-")
        try:
            version = importlib.metadata.version(name)
        except Exception:  # noqa: BLE001 - missing or unreadable METADATA: keyed as "-"
            version = "-"
        found.append(f";{name}=={version}")
    return "".join(sorted(found))


def _dist_version(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    try:
        return dist.version if dist is not None else ""
    except Exception:  # noqa: BLE001 - unreadable METADATA: no version to key on
        return ""


def _import_source(path: Path, data: bytes) -> ModuleType:
    """Execute ``data`` (the bytes read from ``path``) as a fresh module."""
    module_name = FILE_MODULE_PREFIX + path.stem
    code = compile(data, str(path), "exec", dont_inherit=True)
    module = ModuleType(module_name)
    module.__file__ = str(path)
    # dataclasses and pickling look the module up while it executes.
    previous = sys.modules.get(module_name)
    sys.modules[module_name] = module
    try:
        exec(code, module.__dict__)
    except BaseException:
        if previous is not None:
            sys.modules[module_name] = previous
        else:
            sys.modules.pop(module_name, None)
        raise
    return module
