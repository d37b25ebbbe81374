"""Installing plugin files, remembered choices, and the pip command line (no Qt)."""

from __future__ import annotations

import json
import sys

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
