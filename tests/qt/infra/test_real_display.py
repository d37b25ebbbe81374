"""The app on a real X server (Xvfb) through Qt's xcb platform, not offscreen.

Every other GUI test runs on Qt's offscreen platform, which needs none of the
X11 libraries a fresh Linux machine may lack; these tests are what notice that.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fmnist_gui.qt.infra import preflight
from tests.conftest import make_tiny_fashion_mnist

needs_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="xcb is Linux's")


def _gui_command() -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from fmnist_gui.qt.app import main; sys.exit(main())",
    ]


def _app_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"QT_QPA_PLATFORM", "DISPLAY"}}
    env.update(
        FMNIST_GUI_HOME=str(tmp_path / "home"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),  # QSettings
        XDG_RUNTIME_DIR=str(tmp_path / "runtime"),
    )
    (tmp_path / "runtime").mkdir(mode=0o700, exist_ok=True)
    env.update(extra)
    return env


@needs_linux
def test_missing_library_is_named_with_install_commands(tmp_path):
    """A real ELF linked against a library that is gone: ldd reports it, we name it."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build a library with a missing dependency")
    soname = "libxcb-fmnistgone.so.0"  # on no machine, unlike libxcb-cursor.so.0
    gone = tmp_path / soname
    src = tmp_path / "x.c"
    src.write_text("int fmnist_probe(void) { return 1; }\n")
    subprocess.run(
        [cc, "-shared", "-fPIC", "-o", str(gone), f"-Wl,-soname,{soname}", str(src)], check=True
    )
    plugin = tmp_path / "libqxcb.so"
    subprocess.run(
        [cc, "-shared", "-fPIC", "-o", str(plugin), str(src), "-Wl,--no-as-needed", str(gone)],
        check=True,
    )
    gone.unlink()  # as on a machine without that package

    assert preflight.missing_libraries(plugin) == [soname]
    problem = preflight.check({"DISPLAY": ":0"}, plugin=plugin)
    assert problem is not None
    assert problem.missing == (soname,)
    assert "\n" not in problem.message
    assert soname in problem.message
    # An xcb extension library: Debian's naming rule, one libxcb package elsewhere.
    assert "sudo apt-get install libxcb-fmnistgone0" in problem.message
    assert "sudo dnf install libxcb" in problem.message
    assert "sudo pacman -S libxcb" in problem.message


def test_the_usual_missing_libraries_map_to_their_packages():
    apt, dnf, pacman = preflight.packages_for(
        ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-shape.so.0"]
    )
    assert apt == ["libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1", "libxcb-shape0"]
    assert dnf == ["xcb-util-cursor", "xcb-util-wm", "xcb-util-keysyms", "libxcb"]
    assert pacman == ["xcb-util-cursor", "xcb-util-wm", "xcb-util-keysyms", "libxcb"]
    # `make run` installs at least what the walkthrough found missing.
    for package in ("libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1"):
        assert package in preflight.APT_XCB_PACKAGES.split()


@needs_linux
def test_other_platforms_are_not_checked():
    assert preflight.check({"QT_QPA_PLATFORM": "offscreen"}) is None
    assert preflight.check({"WAYLAND_DISPLAY": "wayland-0"}) is None


@needs_linux
def test_no_display_is_one_line_and_exit_1_not_a_qt_abort(tmp_path):
    out = subprocess.run(
        _gui_command(), env=_app_env(tmp_path), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "DISPLAY is not set" in lines[0]
    assert "xvfb-run" in lines[0]


def _free_display() -> int:
    for number in range(90, 140):
        if (
            not Path(f"/tmp/.X11-unix/X{number}").exists()
            and not Path(f"/tmp/.X{number}-lock").exists()
        ):
            return number
    pytest.skip("no free X display number")


def _wait_for_window(display: str, name: str, deadline: float) -> str:
    while time.monotonic() < deadline:
        found = subprocess.run(
            ["xdotool", "search", "--onlyvisible", "--name", name],
            env={**os.environ, "DISPLAY": display},
            capture_output=True,
            text=True,
            check=False,
        )
        ids = found.stdout.split()
        if ids:
            return ids[0]
        time.sleep(0.2)
    raise AssertionError(f"no visible window named {name!r} appeared")


@needs_linux
@pytest.mark.skipif(
    not (shutil.which("Xvfb") and shutil.which("xdotool")), reason="needs Xvfb and xdotool"
)
def test_app_opens_its_window_on_a_real_x_server_and_quits(tmp_path):
    number = _free_display()
    display = f":{number}"
    xvfb = subprocess.Popen(
        ["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    app = None
    try:
        deadline = time.monotonic() + 20
        while not Path(f"/tmp/.X11-unix/X{number}").exists():
            assert xvfb.poll() is None, "Xvfb did not start"
            assert time.monotonic() < deadline, "Xvfb did not open its socket"
            time.sleep(0.1)
        data = make_tiny_fashion_mnist(tmp_path / "data")
        app = subprocess.Popen(
            [*_gui_command(), "--data-dir", str(data)],
            env=_app_env(tmp_path, DISPLAY=display, QT_QPA_PLATFORM="xcb"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        window = _wait_for_window(display, "Fashion-MNIST", time.monotonic() + 90)
        assert app.poll() is None, app.communicate()[1]
        geometry = subprocess.run(
            ["xdotool", "getwindowgeometry", window],
            env={**os.environ, "DISPLAY": display},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        width, height = (int(v) for v in geometry.split("Geometry:")[1].split()[0].split("x"))
        assert width >= 640, geometry
        assert height >= 400, geometry
        # No window manager: focus by hand, then a real key press through XTEST.
        xdo_env = {**os.environ, "DISPLAY": display}
        subprocess.run(["xdotool", "windowfocus", "--sync", window], env=xdo_env, check=True)
        subprocess.run(["xdotool", "key", "ctrl+q"], env=xdo_env, check=True)
        _, stderr = app.communicate(timeout=60)
        assert app.returncode == 0, stderr
        assert "could not load the Qt platform plugin" not in stderr
    finally:
        if app is not None and app.poll() is None:
            app.kill()
            app.wait()
        xvfb.send_signal(signal.SIGTERM)
        xvfb.wait(timeout=10)
