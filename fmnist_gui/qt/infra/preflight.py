"""Can Qt open a window here? Checked before the ``QApplication`` exists.

Without this, a Linux machine that lacks one of the X11 libraries Qt's ``xcb``
platform plugin links against (``libxcb-cursor0`` is the usual one since Qt
6.5) makes Qt print a paragraph and abort the process. Here we ask the dynamic
linker (``ldd``) which libraries the plugin cannot find, and say in one line
which packages to install with apt, dnf or pacman.

Nothing in this module imports Qt: the check must run before Qt can abort.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# soname -> (apt, dnf, pacman) package. Sonames not listed get Debian's
# naming rule (libfoo.so.1 -> libfoo1) and the upstream name elsewhere.
_PACKAGES: dict[str, tuple[str, str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image", "xcb-util-image"),
    "libxcb-render-util.so.0": (
        "libxcb-render-util0",
        "xcb-util-renderutil",
        "xcb-util-renderutil",
    ),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util", "xcb-util"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11", "libxkbcommon-x11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon", "libxkbcommon"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb", "libx11"),
    "libX11.so.6": ("libx11-6", "libX11", "libx11"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl", "libglvnd"),
    "libGL.so.1": ("libgl1", "libglvnd-glx", "libglvnd"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl", "libglvnd"),
    "libGLX.so.0": ("libglx0", "libglvnd-glx", "libglvnd"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype", "freetype2"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs", "dbus"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2", "glib2"),
    "libSM.so.6": ("libsm6", "libSM", "libsm"),
    "libICE.so.6": ("libice6", "libICE", "libice"),
}
# The xcb extension libraries all come from one package outside Debian.
_XCB_EXTENSION = re.compile(r"^libxcb(-[a-z]+)?\.so\.(\d+)$")

# What the README and `make run` install on Debian and Ubuntu: every library the
# xcb plugin needs there, whether or not this machine lacks it.
APT_XCB_PACKAGES = (
    "libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 "
    "libxcb-shape0 libxcb-randr0 libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 "
    "libxkbcommon0 libx11-xcb1 libegl1 libgl1 libfontconfig1 libdbus-1-3"
)


@dataclass(frozen=True)
class Problem:
    """Why Qt would not open a window, as one line to print."""

    message: str
    missing: tuple[str, ...] = ()


def packages_for(sonames: list[str]) -> tuple[list[str], list[str], list[str]]:
    """The (apt, dnf, pacman) packages that provide ``sonames``, in order, without repeats."""
    apt: list[str] = []
    dnf: list[str] = []
    pacman: list[str] = []
    for soname in sonames:
        known = _PACKAGES.get(soname)
        if known is None:
            m = _XCB_EXTENSION.match(soname)
            stem = soname.split(".so", 1)[0]
            version = soname.rsplit(".so.", 1)[-1] if ".so." in soname else ""
            sep = "-" if stem[-1:].isdigit() else ""
            debian = f"{stem}{sep}{version}".lower()
            upstream = "libxcb" if m else stem
            known = (debian, upstream, upstream.lower())
        for names, name in zip((apt, dnf, pacman), known, strict=True):
            if name not in names:
                names.append(name)
    return apt, dnf, pacman


def missing_libraries(library: Path) -> list[str] | None:
    """Sonames ``library`` needs that the dynamic linker cannot find; None if unknown."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return None
    try:
        out = subprocess.run(
            [ldd, str(library)], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    missing = []
    for line in out.stdout.splitlines():
        name, _, where = line.strip().partition("=>")
        if where.strip() == "not found" and name.strip() not in missing:
            missing.append(name.strip())
    return missing


def xcb_plugin() -> Path | None:
    """PySide6's xcb platform plugin, found without importing any Qt module."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        if candidate.is_file():
            return candidate
    return None


def _platform_requested(env: os._Environ[str] | dict[str, str]) -> str:
    """The platform Qt will try first: QT_QPA_PLATFORM, else the session's."""
    forced = env.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if forced:
        return forced
    if env.get("WAYLAND_DISPLAY") or env.get("XDG_SESSION_TYPE") == "wayland":
        return "wayland"
    return "xcb"


def check(
    env: os._Environ[str] | dict[str, str] | None = None,
    plugin: Path | None = None,
) -> Problem | None:
    """None when Qt should be able to open a window here, else the problem.

    Only Linux's xcb platform is checked; elsewhere, and when Qt is told to use
    another platform (offscreen, wayland, ...), this says nothing.
    """
    env = os.environ if env is None else env
    if not sys.platform.startswith("linux") or _platform_requested(env) != "xcb":
        return None
    plugin = plugin or xcb_plugin()
    if plugin is not None:
        missing = missing_libraries(plugin)
        # libqxcb.so loads libQt6XcbQpa.so.6 from Qt's own lib folder: ldd follows it.
        if missing:
            apt, dnf, pacman = packages_for(missing)
            return Problem(
                "fmnist-gui: Qt cannot open a window: its X11 (xcb) platform needs "
                f"{', '.join(missing)}, not installed here. Install them with "
                f"`sudo apt-get install {' '.join(apt)}` (Debian, Ubuntu), "
                f"`sudo dnf install {' '.join(dnf)}` (Fedora) or "
                f"`sudo pacman -S {' '.join(pacman)}` (Arch), then start fmnist-gui again.",
                tuple(missing),
            )
    if not env.get("DISPLAY"):
        return Problem(
            "fmnist-gui: no display to open a window on (DISPLAY is not set). Start it from "
            "a desktop session, or under a virtual screen with `xvfb-run -a fmnist-gui`."
        )
    return None


__all__ = ["APT_XCB_PACKAGES", "Problem", "check", "missing_libraries", "packages_for"]
