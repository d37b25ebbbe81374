"""``pip install plugins/fmnist-optimizer-zoo`` into a fresh venv: 100+ optimizers appear.

The venv is made as in ``test_plugins_venv`` (torch and pytorch-optimizer come
from the test environment through a ``.pth`` line; nothing is downloaded).
``--list-plugins`` must offer at least 100 of the library's optimizers and
give a reason for every one it refuses; one trains from the command line; the
package's own tests (derived schemas, real-data epochs, exact resume) pass there.
"""

from __future__ import annotations

import re

import pytest

from fmnist_gui.training.data import missing_files
from tests.conftest import REAL_DATA_ROOT
from tests.plugins.test_plugins_venv import (  # noqa: F401 - fresh_install is a fixture
    ROOT,
    _copy_sources,
    _pip_install,
    _run,
    fresh_install,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def zoo_install(fresh_install, tmp_path_factory):  # noqa: F811 - the imported fixture
    env_dir, cwd = fresh_install
    package = _copy_sources(
        ROOT / "plugins", tmp_path_factory.mktemp("zoo") / "pkg", ["fmnist-optimizer-zoo"]
    )
    _pip_install(env_dir / "bin" / "python", package / "fmnist-optimizer-zoo", cwd=cwd)
    return env_dir, cwd, package / "fmnist-optimizer-zoo"


def test_list_plugins_offers_100_and_explains_every_refusal(zoo_install):
    env_dir, cwd, _ = zoo_install
    bin_dir = env_dir / "bin"
    library = _run(
        [
            bin_dir / "python",
            "-c",
            "import pytorch_optimizer as p; print(*p.get_supported_optimizers())",
        ],
        cwd=cwd,
    ).stdout.split()
    assert len(library) >= 128

    listing = _run([bin_dir / "fmnist-train", "--list-plugins"], cwd=cwd).stdout
    row = next(line for line in listing.splitlines() if line.startswith("optimizer_zoo "))
    assert row.split()[1:4] == ["package", "1.0.0", "loaded"]
    # Every library optimizer is listed: refused ones as "zoo_NAME: <why>", which holds
    # however the table lays out the offered ones.
    refused = {n for n in library if re.search(rf"\bzoo_{n}: \w.{{10,}}", listing)}
    offered = {n for n in library if re.search(rf"\bzoo_{n}\b", listing)} - refused
    assert offered | refused == set(library), "some optimizers are neither offered nor explained"
    assert len(offered) >= 100
    assert len(refused) == len(library) - len(offered)


def test_a_zoo_optimizer_trains_from_the_command_line(zoo_install, tiny_root):
    env_dir, cwd, _ = zoo_install
    run = _run(
        [
            env_dir / "bin" / "fmnist-train",
            "--optimizer",
            "zoo_lion",
            "--opt-param",
            "betas=0.9,0.99",
            "--lr",
            "1e-4",
            "--epochs",
            "1",
            "--data-dir",
            tiny_root,
            "--no-download",
        ],
        cwd=cwd,
    )
    assert run.stdout.startswith("Epoch 1\n")
    assert run.stdout.rstrip().endswith("Done!")


def test_the_package_tests_pass_in_the_install(zoo_install, tmp_path, monkeypatch):
    env_dir, _, package = zoo_install
    # The autouse home fixture hides the user's data folder: name the real data.
    monkeypatch.setenv("FMNIST_REAL_DATA", str(REAL_DATA_ROOT))
    tests = _run(
        [env_dir / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"]
        + [package / "tests"],
        cwd=tmp_path,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    if not missing_files(REAL_DATA_ROOT):  # then the real-data epochs must have run
        assert "skipped" not in tests.stdout, tests.stdout
