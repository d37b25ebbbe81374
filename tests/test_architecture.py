"""The layering rules: import contracts, and checks on the source text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fmnist_gui"


def test_import_contracts_hold(capsys):
    """The layers, the Qt-free engine and the independent Qt features.

    The contracts live in pyproject.toml's ``[tool.importlinter]``; ``make lint``
    checks them too, as ``lint-imports``.
    """
    from importlinter.cli import lint_imports

    exit_code = lint_imports(
        config_filenames=(str(ROOT / "pyproject.toml"),), no_cache=True, no_logo=True
    )
    assert exit_code == 0, capsys.readouterr().out


def test_no_code_outside_plugins_names_an_optimizer_or_loss_class():
    pattern = re.compile(
        r"\b(optim\.(SGD|Adam\w*|RMSprop|Adagrad|NAdam|RAdam|Adadelta|Adamax|LBFGS|ASGD|Rprop)"
        r"|nn\.(CrossEntropyLoss|NLLLoss|MSELoss))\b"
    )
    offenders = [
        str(path.relative_to(ROOT))
        for path in PACKAGE.rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, f"optimizer/loss classes named outside plugins/: {offenders}"


def test_importing_the_package_does_not_import_torch_or_qt():
    """Plugin authors import fmnist_gui; the GUI shows its window before torch loads."""
    import subprocess
    import sys

    code = (
        "import sys, fmnist_gui, fmnist_gui.system.paths, fmnist_gui.training.config;"
        "print(sorted(m for m in ('torch', 'PySide6') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_checkpoint_loading_is_weights_only():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for call in re.findall(r"torch\.load\(([^)]*)\)", text):
            assert "weights_only=True" in call, f"{path}: torch.load({call})"
        assert "weights_only=False" not in text, path
        assert "pickle.load" not in text, path


def test_every_package_is_in_the_distribution():
    # A package missing from pyproject's list works in the editable checkout and
    # fails only after a real install: the app could not import it there.
    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[1]
    listed = set(
        tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(root).parts)
        for init in (root / "fmnist_gui").rglob("__init__.py")
    }
    assert found <= listed, sorted(found - listed)
