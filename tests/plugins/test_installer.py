"""Installing plugin files, remembered choices, and the pip command line (no Qt)."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest

from fmnist_gui.plugins.host import get_plugin_manager
from fmnist_gui.plugins.installer import (
    InstallError,
    PluginSettings,
    file_sha256,
    install_file,
    pip_install_command,
    remove_file,
    settings_path,
)
from fmnist_gui.system.paths import user_plugin_dir
from tests.support.plugin_fixtures import good_optimizer_source, write_plugin


@pytest.fixture
def plugin_file(tmp_path):
    return write_plugin(tmp_path / "downloads", "my_adagrad", good_optimizer_source())


def test_settings_round_trip_atomically(tmp_path):
    settings = PluginSettings.load()
    assert settings.disabled == set()
    assert settings.problem == ""
    settings.set_enabled("builtin_losses", False)
    settings.trusted_files["x.py"] = "ab" * 32
    settings.save()
    again = PluginSettings.load()
    assert again.disabled == {"builtin_losses"}
    assert again.trusted_files == {"x.py": "ab" * 32}
    assert json.loads(settings_path().read_text())["version"] == 1
    # No temp file left next to it.
    assert [p.name for p in settings_path().parent.iterdir()] == ["plugins.json"]


def test_corrupt_settings_fall_back_to_defaults_with_a_warning(tmp_path):
    settings_path().parent.mkdir(parents=True)
    settings_path().write_text("{not json")
    settings = PluginSettings.load()
    assert settings.disabled == set()
    assert "could not be read" in settings.problem
    host = get_plugin_manager([tmp_path / "none"])
    assert any("plugins.json" in w for w in host.warnings)
    assert "sgd" in host.optimizers


def test_install_copies_trusts_and_loads(plugin_file):
    settings = PluginSettings.load()
    digest = file_sha256(plugin_file)
    installed = install_file(plugin_file, digest, settings=settings)
    assert installed.path == user_plugin_dir() / "my_adagrad.py"
    assert installed.path.read_bytes() == plugin_file.read_bytes()
    assert not installed.replaced
    assert PluginSettings.load().trusted_files == {"my_adagrad.py": digest}
    host = get_plugin_manager()  # the user plugin folder, approvals applied
    assert host.records["my_adagrad"].status == "loaded"
    assert "my_adagrad" in host.optimizers


def test_install_refuses_a_file_changed_after_consent(plugin_file):
    digest = file_sha256(plugin_file)
    plugin_file.write_text(plugin_file.read_text() + "\n# tampered\n")
    with pytest.raises(InstallError, match="changed after you approved it"):
        install_file(plugin_file, digest, settings=PluginSettings.load())
    assert not (user_plugin_dir() / plugin_file.name).exists()
    assert PluginSettings.load().trusted_files == {}


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("notes.txt", "not a Python file"),
        ("my-plugin.py", "Python identifier"),
        ("_private.py", "ignored"),
    ],
)
def test_install_refuses_bad_file_names(tmp_path, name, words):
    path = tmp_path / name
    path.write_text("")
    with pytest.raises(InstallError, match=words):
        install_file(path, file_sha256(path))


def test_install_into_an_unwritable_plugin_folder_says_how_to_fix_it(plugin_file, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, so nothing can be created below it (even as root)")
    with pytest.raises(InstallError, match="cannot write to the plugin folder.*FMNIST_GUI_HOME"):
        install_file(plugin_file, file_sha256(plugin_file), folder=blocker / "plugins")
    # The host still starts with such a folder.
    host = get_plugin_manager([blocker / "plugins"])
    assert "sgd" in host.optimizers


def test_remove_deletes_the_file_and_forgets_it(plugin_file):
    settings = PluginSettings.load()
    install_file(plugin_file, file_sha256(plugin_file), settings=settings)
    target = remove_file("my_adagrad", settings=settings)
    assert not target.exists()
    assert PluginSettings.load().trusted_files == {}


def test_pip_command_for_the_running_interpreter(tmp_path):
    assert pip_install_command("fmnist-nadam==1.0")[:4] == [sys.executable, "-m", "pip", "install"]
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname='x'\n")
    assert pip_install_command(str(project))[-1] == str(project.resolve())
    wheel = tmp_path / "x-1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    assert pip_install_command(str(wheel))[-1] == str(wheel.resolve())


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("", "give a package name"),
        ("fmnist nadam; echo hi", "not a package name"),
        ("./nope", "does not exist"),
    ],
)
def test_pip_command_refuses_nonsense(target, words):
    with pytest.raises(InstallError, match=words):
        pip_install_command(target)


def test_pip_command_refuses_a_folder_that_is_not_a_project(tmp_path):
    with pytest.raises(InstallError, match="not a Python project"):
        pip_install_command(str(tmp_path))


def test_a_folder_or_wheel_without_an_fmnist_gui_entry_point_is_refused(tmp_path):
    from fmnist_gui.plugins.installer import plugin_entry_points

    zoo = Path(__file__).resolve().parents[2] / "plugins" / "fmnist-optimizer-zoo"
    assert plugin_entry_points(zoo) == ["optimizer_zoo"]
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "pyproject.toml").write_text(
        '[project]\nname = "plain"\nversion = "1"\n[project.entry-points.console_scripts]\n'
        'plain = "plain:main"\n'
    )
    with pytest.raises(InstallError, match="not an fmnist-gui plugin package"):
        plugin_entry_points(plain)

    def wheel(name: str, entry_points: str) -> Path:
        path = tmp_path / f"{name}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(f"{name}/__init__.py", "")
            archive.writestr(f"{name}-1.0.dist-info/entry_points.txt", entry_points)
        return path

    good = wheel("good", "[fmnist_gui]\nMyPlugin = good\n[console_scripts]\ng = good:main\n")
    assert plugin_entry_points(good) == ["MyPlugin"]
    with pytest.raises(InstallError, match="not an fmnist-gui plugin package"):
        plugin_entry_points(wheel("bad", "[console_scripts]\nb = bad:main\n"))
    broken = tmp_path / "broken-1.0-py3-none-any.whl"
    broken.write_bytes(b"not a zip")
    with pytest.raises(InstallError, match="not a readable wheel"):
        plugin_entry_points(broken)


def test_uninstall_command_takes_a_distribution_name_only():
    from fmnist_gui.plugins.installer import pip_uninstall_command

    argv = pip_uninstall_command("fmnist-optimizer-zoo")
    assert argv[0] == sys.executable
    assert argv[1:4] == ["-m", "pip", "uninstall"]
    assert argv[-2:] == ["-y", "fmnist-optimizer-zoo"]
    for bad in ("", "zoo==1.0", "zoo; rm -rf /", "../x"):
        with pytest.raises(InstallError):
            pip_uninstall_command(bad)


def test_pip_failures_are_explained_and_a_missing_pip_is_named(tmp_path):
    from fmnist_gui.plugins.installer import explain_pip_failure, pip_problem

    offline = (
        "ERROR: Could not find a version that satisfies the requirement pytorch-optimizer\n"
        "ERROR: No matching distribution found for pytorch-optimizer"
    )
    assert "could not download a dependency" in explain_pip_failure(offline)
    assert explain_pip_failure("ERROR: something else entirely") == ""
    assert pip_problem() == ""  # this interpreter has pip
    no_pip = tmp_path / "venv"
    import venv

    venv.EnvBuilder(with_pip=False).create(no_pip)
    problem = pip_problem(str(no_pip / "bin" / "python"))
    assert "pip is not available" in problem
    assert "ensurepip" in problem
