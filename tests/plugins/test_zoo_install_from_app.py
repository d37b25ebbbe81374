"""The app's install path, for real: pip installs the zoo into a fresh venv and uninstalls it.

A script run by the venv's interpreter does what Plugins → Install package…
and Uninstall package… do (``installer`` checks and pip command lines, then
``PluginHost.rescan()``) in one process that keeps running: the zoo's
optimizers must appear without a restart, and disappear after the uninstall.
The venv is made as in ``test_plugins_venv`` (torch, pip and pytorch-optimizer
come from the test environment through a ``.pth`` line; nothing is downloaded,
hence ``--no-deps``); this checkout is importable through ``PYTHONPATH``.
The test environment itself is never installed into.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sysconfig
import textwrap
import venv
from pathlib import Path

import pytest

from tests.plugins.test_plugins_venv import ROOT, _copy_sources

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import json, subprocess, sys
    from pathlib import Path

    from fmnist_gui.plugins import installer
    from fmnist_gui.plugins.host import get_plugin_manager

    zoo, offline = Path(sys.argv[1]), sys.argv[2:]
    out = {"prefix": sys.prefix}
    host = get_plugin_manager([], selftest_cache=True)
    before = set(host.optimizers)
    out["entry_points"] = installer.plugin_entry_points(zoo)
    out["pip_problem"] = installer.pip_problem()
    argv = installer.pip_install_command(str(zoo), extra_args=["--no-deps", "-q", *offline])
    out["install_argv"] = argv
    subprocess.run(argv, check=True)
    report = host.rescan()
    out["loaded"] = [r.name for r in report.loaded]
    out["added"] = sorted(set(host.optimizers) - before)
    record = host.records["optimizer_zoo"]
    out["status"] = record.status
    out["refused"] = record.rejected
    out["distribution"] = dist = host.distribution_of("optimizer_zoo")
    out["selftests"] = host.selftests_run
    subprocess.run(installer.pip_uninstall_command(dist), check=True)
    report = host.rescan()
    out["removed"] = [r.name for r in report.removed]
    out["left"] = sorted(n for n in host.optimizers if n.startswith("zoo_"))
    out["records"] = sorted(host.records)
    out["still_installed"] = bool(installer.subprocess.run(
        [sys.executable, "-m", "pip", "show", "-q", dist], capture_output=True
    ).returncode == 0)
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory):
    """A venv that sees the test environment's packages but has none of its own."""
    base = tmp_path_factory.mktemp("zoo-app-install")
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return base, python, Path(purelib)


def test_install_package_then_uninstall_without_restart(bare_venv):
    base, python, purelib = bare_venv
    package = _copy_sources(ROOT / "plugins", base / "src", ["fmnist-optimizer-zoo"])
    offline = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHOME"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins")])
    env["FMNIST_GUI_HOME"] = str(base / "home")
    env["FMNIST_GUI_SYSTEM_DATASET"] = os.devnull
    run = subprocess.run(
        [python, "-c", SCRIPT, package / "fmnist-optimizer-zoo", *offline],
        capture_output=True,
        text=True,
        cwd=base,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["prefix"] == str(base / "venv")
    assert out["entry_points"] == ["optimizer_zoo"]
    assert out["pip_problem"] == ""
    assert out["install_argv"][:4] == [str(python), "-m", "pip", "install"]
    # Installed into the venv, found by the same process: no restart.
    assert out["loaded"] == ["optimizer_zoo"]
    assert out["status"] == "loaded"
    assert len(out["added"]) >= 100
    assert all(n.startswith("zoo_") for n in out["added"])
    assert {"zoo_lion", "zoo_adan", "zoo_prodigy"} <= set(out["added"])
    assert all(reason for reason in out["refused"].values())
    assert out["selftests"] >= len(out["added"])
    assert out["distribution"] == "fmnist-optimizer-zoo"
    # pip removed it, and the rescan dropped every one of its optimizers.
    assert out["removed"] == ["optimizer_zoo"]
    assert out["left"] == []
    assert "optimizer_zoo" not in out["records"]
    assert "builtin_optimizers" in out["records"]
    assert not out["still_installed"]
    assert not list(purelib.glob("fmnist_optimizer_zoo*"))


GUI_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication, QMessageBox

    from fmnist_gui.qt.app import build_app
    from fmnist_gui.qt.features.plugins import dialogs

    zoo, data, ini, offline = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4:]
    qt = QApplication.instance() or QApplication([])
    asked = []
    QMessageBox.question = staticmethod(
        lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.Yes
    )
    QMessageBox.warning = staticmethod(lambda *a, **k: asked.append("WARNING " + a[2]))

    def wait(condition, seconds=300):
        end = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > end:
                raise SystemExit("timed out")
            qt.processEvents()
            time.sleep(0.01)

    app = build_app(data, settings=QSettings(ini, QSettings.Format.IniFormat))
    app.window.show()
    app.start_loading()
    wait(lambda: app.window.state == "idle")
    training = app.training.panel.optimizer_combo
    race = app.compare.race_view.optimizer_combo

    def names(combo):
        return [combo.itemData(i) for i in range(combo.count())]

    out = {"before": len(names(training))}
    app.plugin_menu.actions["install_package"].trigger()
    dialog = [d for d in app.window.findChildren(dialogs.PackageInstallDialog)][-1]
    dialog.extra_pip_args = ["--no-deps", "-q", *offline]
    dialog.target_edit.setText(str(zoo))
    dialog.install_button.click()
    out["cancellable"] = dialog.cancel_button.isEnabled()
    wait(lambda: dialog.outcome != "")
    out["install"] = dialog.outcome
    out["install_status"] = dialog.status_label.text()
    out["training_after_install"] = names(training)
    out["race_after_install"] = names(race)
    dialog.close()

    manager = dialogs.open_manager(app.window)
    out["spec_rows"] = len(manager.spec_rows())
    manager.close()

    uninstall = dialogs.uninstall_package(app.window, "fmnist-optimizer-zoo")
    wait(lambda: uninstall.outcome != "")
    out["uninstall"] = uninstall.outcome
    out["uninstall_status"] = uninstall.status_label.text()
    out["training_after_uninstall"] = names(training)
    out["race_after_uninstall"] = names(race)
    out["asked"] = asked
    uninstall.close()
    app.shutdown(30_000)
    print(json.dumps(out))
    """
)


def test_the_app_installs_and_uninstalls_the_zoo_from_its_menu(bare_venv, tmp_path):
    from tests.conftest import make_tiny_fashion_mnist

    base, python, purelib = bare_venv
    package = _copy_sources(ROOT / "plugins", tmp_path / "src", ["fmnist-optimizer-zoo"])
    data = make_tiny_fashion_mnist(tmp_path / "data")
    offline = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHOME"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins")])
    env["FMNIST_GUI_HOME"] = str(tmp_path / "home")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["FMNIST_GUI_SYSTEM_DATASET"] = os.devnull
    env["QT_QPA_PLATFORM"] = "offscreen"
    run = subprocess.run(
        [
            python,
            "-c",
            GUI_SCRIPT,
            package / "fmnist-optimizer-zoo",
            data,
            tmp_path / "settings.ini",
            *offline,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["cancellable"]
    assert out["install"] == "installed", out
    assert "optimizer_zoo" in out["install_status"]
    zoo = [n for n in out["training_after_install"] if n.startswith("zoo_")]
    assert len(zoo) >= 100
    assert out["training_after_install"][: out["before"]] == out["training_after_uninstall"]
    assert [n for n in out["race_after_install"] if n.startswith("zoo_")] == zoo
    assert out["spec_rows"] >= 128
    assert out["uninstall"] == "uninstalled", out
    assert "optimizer_zoo" in out["uninstall_status"]
    assert not [n for n in out["training_after_uninstall"] if n.startswith("zoo_")]
    assert not [n for n in out["race_after_uninstall"] if n.startswith("zoo_")]
    assert len(out["asked"]) == 1  # the uninstall was confirmed first; no warning
    assert "fmnist-optimizer-zoo" in out["asked"][0]
    assert not list(purelib.glob("fmnist_optimizer_zoo*"))
