"""Real installs with pip into a fresh virtual environment.

1. A non-editable ``pip install`` of this project gives working ``fmnist-train``
   and ``fmnist-gui`` console scripts with the built-in plugins (issue 2).
2. ``pip install plugins/fmnist-nadam`` adds its optimizers to that install:
   ``--list-plugins`` shows them and a 1-epoch run trains with one (issue 5).

The venv must not reinstall torch (no internet here, and minutes of work):
it is made ``--without-pip`` and given one ``.pth`` line naming the test
environment's site-packages, so torch, pip and setuptools come from there.
(``venv --system-site-packages`` would expose the *base* interpreter's
site-packages, not this venv's.) A path line in a ``.pth`` file does not run
the ``.pth`` files of the folder it names, so the editable install of the
checkout stays inactive: the venv's own non-editable copy is what runs, and
the tests assert that. Sources are copied to a temp folder first, so the
build's ``build/`` and ``*.egg-info`` never land in the checkout.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _pip_install(python, target, *, cwd):
    """``pip install --no-deps`` of a local project, offline when setuptools is here."""
    # --no-build-isolation reuses this environment's setuptools (no download);
    # without one (Python >= 3.12 venvs lack it) pip fetches it from the index.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    return _run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--no-deps",
            *isolation,
            "--disable-pip-version-check",
            "--no-input",
            "-q",
            target,
        ],
        cwd=cwd,
    )


def _run(argv, *, cwd, timeout=300, check=True):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["FMNIST_GUI_SYSTEM_DATASET"] = os.devnull
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env
    )
    if check:
        assert result.returncode == 0, f"{argv}\n{result.stdout}\n{result.stderr}"
    return result


def _copy_sources(src: Path, dest: Path, names: list[str]) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist", ".venv")
    dest.mkdir(parents=True)
    for name in names:
        if (src / name).is_dir():
            shutil.copytree(src / name, dest / name, ignore=ignore)
        elif (src / name).exists():
            shutil.copy2(src / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def fresh_install(tmp_path_factory):
    """A new venv with this project pip-installed (non-editable) into it."""
    base = tmp_path_factory.mktemp("venv-install")
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(env_dir)
    python = env_dir / "bin" / "python"
    site_dir = Path(
        _run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=base
        ).stdout.strip()
    )
    (site_dir / "_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    source = _copy_sources(
        ROOT,
        base / "src",
        ["pyproject.toml", "README.md", "LICENSE", "fmnist_gui", "plugins", "resources"],
    )
    _pip_install(python, source, cwd=base)
    return env_dir, base


def test_non_editable_install_runs_both_commands_with_builtins(fresh_install):
    env_dir, cwd = fresh_install
    bin_dir = env_dir / "bin"
    where = _run(
        [
            bin_dir / "python",
            "-I",
            "-c",
            "import fmnist_gui, fmnist_builtins, pathlib;"
            "import fmnist_gui.qt.features.checkpoints.controller;"
            "from importlib.resources import files;"
            "p = pathlib.Path(fmnist_gui.__file__).parent;"
            "print(p); print(fmnist_builtins.__file__);"
            "print((files('fmnist_gui.resources') / 'fmnist-gui.svg').is_file())",
        ],
        cwd=cwd,
    )
    package, builtins, icon = where.stdout.split()
    assert package.startswith(str(env_dir))
    assert builtins.startswith(str(env_dir))
    assert icon == "True"

    listing = _run([bin_dir / "fmnist-train", "--list-plugins"], cwd=cwd).stdout
    for name in (
        "optimizer:sgd",
        "optimizer:adam",
        "optimizer:rmsprop",
        "loss:cross_entropy",
        "loss:nll",
        "loss:mse",
    ):
        assert name in listing
    assert "error in plugin" not in listing
    assert "built-in" in listing

    version = _run([bin_dir / "fmnist-gui", "--version"], cwd=cwd)
    assert version.stdout.startswith("fmnist-gui ")


def test_pip_installed_plugin_package_lists_and_trains(fresh_install, tmp_path, tiny_root):
    env_dir, cwd = fresh_install
    bin_dir = env_dir / "bin"
    package = _copy_sources(ROOT / "plugins", tmp_path / "pkg", ["fmnist-nadam"])
    _pip_install(bin_dir / "python", package / "fmnist-nadam", cwd=cwd)

    listing = _run([bin_dir / "fmnist-train", "--list-plugins"], cwd=cwd).stdout
    row = next(line for line in listing.splitlines() if line.startswith("nadam "))
    assert row.split()[1:4] == ["package", "1.0.0", "loaded"]
    assert "optimizer:nadam" in row
    assert "optimizer:radam" in row

    run = _run(
        [
            bin_dir / "fmnist-train",
            "--optimizer",
            "nadam",
            "--opt-param",
            "momentum_decay=0.01",
            "--epochs",
            "1",
            "--lr",
            "0.01",
            "--data-dir",
            tiny_root,
            "--no-download",
        ],
        cwd=cwd,
    )
    assert run.stdout.startswith("Epoch 1\n")
    assert run.stdout.rstrip().endswith("Done!")

    # The package's own tests (the guide's "how to test a plugin") pass there too.
    tests = _run(
        [
            bin_dir / "python",
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            package / "fmnist-nadam" / "tests",
        ],
        cwd=tmp_path,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
