"""Installing plugins and remembering the user's choices (no Qt here).

- ``PluginSettings``: which plugins are disabled and which plugin files the
  user approved (file name -> SHA-256). It is a small JSON file in the
  per-user data folder, written atomically. Not ``QSettings``: the CLI, which
  has no Qt, must honour the same choices as the app.
- ``install_file``: copy a ``.py`` plugin into the user plugin folder after the
  user consented to its SHA-256; the bytes written are the bytes hashed.
- ``pip_install_command`` / ``pip_uninstall_command``: the ``python -m pip``
  command lines for the running interpreter, after checking what the user typed;
  ``plugin_entry_points`` refuses a folder or wheel that is no plugin package,
  ``pip_problem`` says when pip is missing, ``explain_pip_failure`` reads pip's
  output for the usual causes (no network for a dependency).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fmnist_gui.errors import FmnistError
from fmnist_gui.system.fileio import write_atomically
from fmnist_gui.system.paths import user_data_dir, user_plugin_dir

SETTINGS_FILE = "plugins.json"
ENTRY_POINT_GROUP = "fmnist_gui"
_PLUGIN_FILE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.py$")
# A requirement such as ``fmnist-nadam``, ``fmnist-nadam==1.0`` or ``pkg[extra]>=2``.
_REQUIREMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?\s*([<>=!~].*)?$")
_ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz")


class InstallError(FmnistError):
    """An install that cannot go ahead; the message names the problem and the fix."""


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def settings_path() -> Path:
    return user_data_dir() / SETTINGS_FILE


@dataclass
class PluginSettings:
    """The user's plugin choices. ``problem`` is set when the file could not be read."""

    disabled: set[str] = field(default_factory=set)
    #: Single specs turned off, as ``kind:name`` (``optimizer:zoo_lion``).
    disabled_specs: set[str] = field(default_factory=set)
    trusted_files: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    problem: str = ""

    @classmethod
    def load(cls, path: Path | None = None) -> PluginSettings:
        """Read the settings; a missing file gives defaults, a broken one too, with ``problem``."""
        path = Path(path) if path is not None else settings_path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path=path)
        except (OSError, ValueError) as exc:
            return cls(
                path=path,
                problem=f"plugin settings {path} could not be read ({exc}); "
                "using defaults: every plugin enabled, no file approved",
            )
        if not isinstance(data, dict):
            return cls(
                path=path, problem=f"plugin settings {path} are not a JSON object; using defaults"
            )
        disabled = data.get("disabled", [])
        disabled_specs = data.get("disabled_specs", [])
        trusted = data.get("trusted_files", {})
        return cls(
            disabled={str(n) for n in disabled} if isinstance(disabled, list) else set(),
            disabled_specs={str(n) for n in disabled_specs}
            if isinstance(disabled_specs, list)
            else set(),
            trusted_files={str(k): str(v) for k, v in trusted.items()}
            if isinstance(trusted, dict)
            else {},
            path=path,
        )

    def save(self) -> None:
        """Write atomically: a crash leaves the old settings or the new ones."""
        path = self.path or settings_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "version": 1,
            "disabled": sorted(self.disabled),
            "disabled_specs": sorted(self.disabled_specs),
            "trusted_files": dict(sorted(self.trusted_files.items())),
        }
        text = json.dumps(payload, indent=2) + "\n"
        write_atomically(path, lambda f: f.write(text.encode("utf-8")))
        self.path = path

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Remember plugin ``name`` as enabled or disabled (``save()`` writes it)."""
        if enabled:
            self.disabled.discard(name)
        else:
            self.disabled.add(name)

    def set_spec_enabled(self, key: str, enabled: bool) -> None:
        """Remember one spec (``kind:name``) as enabled or disabled."""
        if enabled:
            self.disabled_specs.discard(key)
        else:
            self.disabled_specs.add(key)


@dataclass(frozen=True)
class InstalledFile:
    path: Path
    sha256: str
    replaced: bool  # a plugin file of that name was already there


def check_plugin_file(source: Path) -> None:
    """Refuse what cannot be a plugin file, before asking the user anything."""
    source = Path(source)
    if source.suffix != ".py":
        raise InstallError(
            f"{source.name} is not a Python file; a plugin file ends in .py "
            "(for a wheel or a project folder use Plugins → Install package…)"
        )
    if not _PLUGIN_FILE_RE.match(source.name):
        raise InstallError(
            f"{source.name}: the file name becomes the plugin's name and must be "
            "a Python identifier (letters, digits, _); rename the file"
        )
    if source.name.startswith("_"):
        raise InstallError(
            f"{source.name}: files starting with _ are ignored in the plugin "
            "folder; rename the file"
        )
    if not source.is_file():
        raise InstallError(f"{source} does not exist or is not a file")


def install_file(
    source: Path,
    expected_sha256: str,
    *,
    folder: Path | None = None,
    settings: PluginSettings | None = None,
) -> InstalledFile:
    """Copy an approved plugin file into the plugin folder and trust its hash.

    ``expected_sha256`` is the hash the user was shown and agreed to: if the
    file changed since, nothing is copied. The copy is atomic.
    """
    source = Path(source)
    check_plugin_file(source)
    folder = Path(folder) if folder is not None else user_plugin_dir()
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise InstallError(f"cannot read {source}: {exc.strerror or exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise InstallError(
            f"{source} changed after you approved it (SHA-256 now {digest[:16]}…); "
            "nothing was installed, please install it again"
        )
    target = folder / source.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        replaced = target.exists()
        if source.resolve() != target.resolve():
            write_atomically(target, lambda f: f.write(data))
    except OSError as exc:
        raise InstallError(
            f"cannot write to the plugin folder {folder}: {exc.strerror or exc}. Make it "
            "writable, or point FMNIST_GUI_HOME at a writable folder"
        ) from None
    if settings is not None:
        settings.trusted_files[target.name] = digest
        settings.save()
    return InstalledFile(target, digest, replaced)


def remove_file(
    name: str, *, folder: Path | None = None, settings: PluginSettings | None = None
) -> Path:
    """Delete plugin file ``name`` (the file stem) from the plugin folder and forget its hash."""
    folder = Path(folder) if folder is not None else user_plugin_dir()
    target = folder / f"{name}.py"
    try:
        target.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise InstallError(f"cannot remove {target}: {exc.strerror or exc}") from None
    if settings is not None:
        settings.trusted_files.pop(target.name, None)
        settings.disabled.discard(name)
        settings.save()
    return target


def pip_install_command(
    target: str, *, python: str | None = None, extra_args: list[str] | None = None
) -> list[str]:
    """The argv that installs ``target`` (a requirement, a wheel/sdist or a project folder).

    It runs pip for the interpreter running the app (``sys.executable``), so
    the package lands where the app can import it.
    """
    target = target.strip()
    if not target:
        raise InstallError("give a package name, a wheel or sdist file, or a project folder")
    path = Path(target).expanduser()
    looks_like_path = os.sep in target or target.startswith(".") or path.exists()
    if looks_like_path:
        if path.is_dir():
            if not ((path / "pyproject.toml").is_file() or (path / "setup.py").is_file()):
                raise InstallError(
                    f"{path} is a folder but not a Python project "
                    "(no pyproject.toml or setup.py in it)"
                )
        elif path.is_file():
            if not path.name.endswith(_ARCHIVE_SUFFIXES):
                raise InstallError(
                    f"{path.name} is not a wheel or sdist ({', '.join(_ARCHIVE_SUFFIXES)})"
                )
        else:
            raise InstallError(f"{path} does not exist")
        target = str(path.resolve())
    elif not _REQUIREMENT_RE.match(target):
        raise InstallError(
            f"{target!r} is not a package name (e.g. fmnist-nadam or "
            "fmnist-nadam==1.0), a wheel, an sdist or a project folder"
        )
    return [
        python or sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        *(extra_args or []),
        target,
    ]


def pip_problem(python: str | None = None) -> str:
    """Why pip cannot run for ``python`` (default: this interpreter); "" when it can."""
    if python is None or python == sys.executable:
        if importlib.util.find_spec("pip") is not None:
            return ""
        where = sys.executable
    else:
        try:
            probe = subprocess.run(
                [python, "-m", "pip", "--version"], capture_output=True, text=True, timeout=60
            )
        except OSError as exc:
            return f"cannot run {python}: {exc.strerror or exc}"
        if probe.returncode == 0:
            return ""
        where = python
    return (
        f"pip is not available for this Python ({where}). Install it with "
        f"`{where} -m ensurepip` (or your system's python3-pip package), then try again"
    )


def plugin_entry_points(target: str | Path) -> list[str]:
    """The ``fmnist_gui`` entry points a project folder or a wheel declares.

    Raises ``InstallError`` when ``target`` declares none: pip would install
    it, but the app would find no plugin in it. An sdist is not looked into
    (``[]``): its metadata is only known once built.
    """
    path = Path(target).expanduser()
    if path.is_dir():
        names = _folder_entry_points(path)
    elif path.name.endswith(".whl"):
        names = _wheel_entry_points(path)
    else:
        return []
    if not names:
        raise InstallError(
            f"{path.name} is not an fmnist-gui plugin package: it declares no entry point "
            f'in the group "{ENTRY_POINT_GROUP}" (add [project.entry-points.{ENTRY_POINT_GROUP}] '
            "to its pyproject.toml, see plugins/README.md)"
        )
    return names


def _folder_entry_points(folder: Path) -> list[str]:
    pyproject = folder / "pyproject.toml"
    if not pyproject.is_file():
        return ["?"]  # a setup.py project: only its build knows; let pip and the rescan tell
    text = pyproject.read_text(encoding="utf-8")
    if sys.version_info < (3, 11):  # no TOML reader in the standard library
        section = f"[project.entry-points.{ENTRY_POINT_GROUP}]"
        if section not in text:
            return []
        body = text.split(section, 1)[1].split("\n[", 1)[0]
        return [line.split("=")[0].strip() for line in body.splitlines() if "=" in line]
    else:
        import tomllib

        try:
            data = tomllib.loads(text)
        except ValueError as exc:
            raise InstallError(f"cannot read {pyproject}: {exc}") from None
        group = data.get("project", {}).get("entry-points", {}).get(ENTRY_POINT_GROUP, {})
        return sorted(group) if isinstance(group, dict) else []


def _wheel_entry_points(wheel: Path) -> list[str]:
    import configparser
    import zipfile

    try:
        with zipfile.ZipFile(wheel) as archive:
            names = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
            text = archive.read(names[0]).decode("utf-8") if names else ""
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise InstallError(f"{wheel.name} is not a readable wheel: {exc}") from None
    parser = configparser.ConfigParser(delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string(text)
    return sorted(parser[ENTRY_POINT_GROUP]) if parser.has_section(ENTRY_POINT_GROUP) else []


def pip_uninstall_command(distribution: str, *, python: str | None = None) -> list[str]:
    """The argv that removes an installed distribution (``pip uninstall -y``)."""
    if not _REQUIREMENT_RE.match(distribution) or any(c in distribution for c in "<>=!~[ "):
        raise InstallError(f"{distribution!r} is not a distribution name")
    return [
        python or sys.executable,
        "-m",
        "pip",
        "uninstall",
        "--disable-pip-version-check",
        "--no-input",
        "-y",
        distribution,
    ]


_NETWORK_SIGNS = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "No matching distribution found",
    "Could not find a version that satisfies",
    "ConnectTimeoutError",
    "ReadTimeoutError",
)


def explain_pip_failure(output: str) -> str:
    """One sentence on why pip failed, from its output ("" when nothing is recognised)."""
    if "No module named pip" in output:
        return pip_problem("") or "pip is not available for this Python"
    if any(sign in output for sign in _NETWORK_SIGNS):
        return (
            "pip could not download a dependency (no network, or no such version on the "
            "package index). Install the package's dependencies first, from files if you are "
            "offline, or connect and try again"
        )
    if "Permission denied" in output or "EnvironmentError: [Errno 13]" in output:
        return (
            "pip may not write to this Python's environment (permission denied); run the app "
            "from a virtual environment you own"
        )
    return ""
