"""The safe-mode question at start-up, after a start that died while loading plugins."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from PySide6.QtWidgets import QMessageBox

from fmnist_gui.plugins import safemode
from fmnist_gui.qt.features.plugins.safe_mode import choose_safe_mode


def leave_marker_of_a_dead_start(plugin: str, location: str) -> None:
    """The marker a process leaves when it dies while loading ``plugin``."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    pid = int(dead.stdout)
    folder = safemode.marker_folder()
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "pid": pid,
        "host": socket.gethostname(),
        "started": 0.0,
        "plugin": plugin,
        "location": location,
    }
    (folder / f"{pid}.json").write_text(json.dumps(state), encoding="utf-8")


def test_safe_mode_is_offered_once_after_a_start_died_loading_plugins(monkeypatch):
    asked = []

    def question(parent, title, text, buttons, default):
        asked.append((title, text, default))
        return answers.pop(0)

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    answers = []
    assert choose_safe_mode() is False
    assert asked == []

    for answer, chosen in (
        (QMessageBox.StandardButton.Yes, True),
        (QMessageBox.StandardButton.No, False),
    ):
        leave_marker_of_a_dead_start("evil", "/plugins/evil.py")
        answers.append(answer)
        assert choose_safe_mode() is chosen
        title, text, default = asked.pop()
        assert title == "Start in safe mode?"
        assert default == QMessageBox.StandardButton.Yes
        assert "while loading plugin 'evil' (/plugins/evil.py)" in text
        assert choose_safe_mode() is False
        assert asked == []
