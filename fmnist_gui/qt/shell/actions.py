"""The window's commands by name, each with the app states it is enabled in.

As in mnelab, one table says which command may run when: a feature registers
its ``QAction`` with the states it is enabled in (and, optionally, a blocker
that can veto it for the moment, with a reason shown as the status tip), and
``ActionTable.update(state)`` is the only code that enables or disables them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from PySide6.QtGui import QAction

AppState = Literal["loading", "idle", "running", "paused", "stopping"]
# "loading": torch, the plugins and the dataset are being loaded; "stopping": a
# Stop was asked and the training thread finishes its batch.
STATES: tuple[AppState, ...] = ("loading", "idle", "running", "paused", "stopping")
ALWAYS: frozenset[AppState] = frozenset(STATES)
IDLE: frozenset[AppState] = frozenset({"idle"})
TRAINING: frozenset[AppState] = frozenset({"running", "paused"})

Blocker = Callable[[], str]


def first_reason(blockers: Iterable[Blocker]) -> str:
    """The reason of the first blocker that holds now ("" when none does)."""
    for blocker in blockers:
        reason = blocker()
        if reason:
            return reason
    return ""


@dataclass
class _Entry:
    action: QAction
    states: frozenset[AppState]
    blocker: Blocker | None
    tip: str  # the status tip while no blocker holds the action
    reason: str = ""  # why the blocker holds it now ("" when it does not)


class ActionTable(Mapping[str, QAction]):
    """Every command of the window by name (``table["save"]``), with its enabling states."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def add(
        self,
        name: str,
        action: QAction,
        states: Iterable[AppState],
        *,
        blocker: Blocker | None = None,
    ) -> QAction:
        """Register ``action`` as ``name``, enabled only in ``states``.

        ``blocker`` is asked at each update while the state allows the action;
        a non-empty answer disables it and becomes its status tip.
        """
        if name in self._entries:
            raise ValueError(f"action {name!r} is registered already")
        unknown = set(states) - set(STATES)
        if unknown:
            raise ValueError(f"unknown states {sorted(unknown)} for action {name!r}")
        self._entries[name] = _Entry(action, frozenset(states), blocker, action.statusTip())
        return action

    def __getitem__(self, name: str) -> QAction:
        return self._entries[name].action

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def states_of(self, name: str) -> frozenset[AppState]:
        """The states in which action ``name`` is enabled (blockers aside)."""
        return self._entries[name].states

    def table(self) -> dict[AppState, frozenset[str]]:
        """The state table: for each state, the names of the actions it enables."""
        return {
            state: frozenset(n for n, e in self._entries.items() if state in e.states)
            for state in STATES
        }

    def set_tip(self, name: str, tip: str) -> None:
        """Change the status tip that ``name`` shows while no blocker holds it."""
        entry = self._entries[name]
        entry.tip = tip
        if not entry.reason:
            entry.action.setStatusTip(tip)

    def update(self, state: AppState) -> None:
        """Enable exactly the actions that ``state`` allows and no blocker holds."""
        for entry in self._entries.values():
            allowed = state in entry.states
            reason = entry.blocker() if allowed and entry.blocker is not None else ""
            entry.action.setEnabled(allowed and not reason)
            if reason != entry.reason:
                entry.reason = reason
                entry.action.setStatusTip(reason or entry.tip)
