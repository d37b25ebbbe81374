"""A searchable optimizer chooser, grouped by plugin, and the item model behind it.

With a zoo installed the host offers ~130 optimizers; a flat combo box of
that size is a scroll hunt. ``SpecChooser`` is a ``QComboBox`` (so callers
keep ``currentData()``, ``findData()``, ``setCurrentIndex()``,
``currentIndexChanged``) whose own items stay one per spec, while its popup
shows a search field over a list grouped by plugin, built-ins first.

The pieces are reusable on their own, e.g. for a checkable list:

- ``spec_entries(specs, records)``: the specs in display order as ``SpecEntry``;
- ``build_spec_model(entries, checkable=False)``: a ``QStandardItemModel`` with a
  non-selectable header row per plugin, then that plugin's specs (``Qt.UserRole``
  holds the spec name);
- ``SpecFilterModel``: a proxy whose ``set_search(text)`` keeps the specs whose
  name, label or plugin contains ``text`` (case-insensitive), and the headers of
  groups with a match.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import (
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import (
    QBrush,
    QFont,
    QGuiApplication,
    QKeyEvent,
    QPalette,
    QStandardItem,
    QStandardItemModel,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFrame,
    QLabel,
    QLineEdit,
    QListView,
    QVBoxLayout,
    QWidget,
)

#: The spec name (``Qt.UserRole``, as ``QComboBox.addItem(text, data)`` stores it).
NAME_ROLE = Qt.ItemDataRole.UserRole
#: The plugin a row belongs to (headers included).
PLUGIN_ROLE = Qt.ItemDataRole.UserRole + 1
#: Lower-case text the search matches: name, label and plugin.
SEARCH_ROLE = Qt.ItemDataRole.UserRole + 2
#: True on a group header row.
HEADER_ROLE = Qt.ItemDataRole.UserRole + 3

BUILTIN = "built-in"


@dataclass(frozen=True)
class SpecEntry:
    """One spec as a chooser shows it."""

    name: str
    label: str
    plugin: str
    builtin: bool
    tooltip: str = ""

    @property
    def text(self) -> str:
        """What a row shows: the label, and the name when it says something else."""
        if not self.label or self.label == self.name:
            return self.name
        return f"{self.label}  ({self.name})"

    @property
    def haystack(self) -> str:
        return f"{self.name}\n{self.label}\n{self.plugin}".lower()


def spec_entries(
    specs: Mapping[str, Any], records: Mapping[str, Any] | None = None
) -> list[SpecEntry]:
    """The specs of ``specs`` (name -> spec) grouped by plugin, built-ins first.

    ``records`` (a ``PluginHost.records``) tells which plugins are built-in
    (``source == "built-in"``); groups keep the host's order otherwise, and
    specs keep their order within a group.
    """
    records = records or {}
    groups: dict[str, list[SpecEntry]] = {}
    for name, spec in specs.items():
        plugin = str(getattr(spec, "plugin", "") or "")
        record = records.get(plugin)
        description = str(getattr(spec, "description", "") or "")
        entry = SpecEntry(
            name=name,
            label=str(getattr(spec, "label", "") or name),
            plugin=plugin,
            builtin=getattr(record, "source", "") == BUILTIN,
            tooltip=f"{description}\nPlugin: {plugin}".strip(),
        )
        groups.setdefault(plugin, []).append(entry)
    ordered = sorted(groups.values(), key=lambda g: not g[0].builtin)  # stable: host order kept
    return [entry for group in ordered for entry in group]


def group_title(entry: SpecEntry, count: int) -> str:
    """A group header's text: the plugin, marked when built in, with its size."""
    plugin = entry.plugin or "(no plugin)"
    mark = " (built-in)" if entry.builtin else ""
    return f"{plugin}{mark} · {count}"


def build_spec_model(
    entries: Iterable[SpecEntry], *, checkable: bool = False, parent: QObject | None = None
) -> QStandardItemModel:
    """A flat model: a header row per plugin (not selectable), then its specs.

    With ``checkable`` each spec row carries an unchecked check box.
    """
    model = QStandardItemModel(parent)
    entries = list(entries)
    sizes: dict[str, int] = {}
    for entry in entries:
        sizes[entry.plugin] = sizes.get(entry.plugin, 0) + 1
    header_font = QFont()
    header_font.setBold(True)
    # Headers are not selectable, and a disabled-looking grey title is hard to read.
    palette = QGuiApplication.palette()
    header_text = QBrush(palette.color(QPalette.ColorRole.WindowText))
    header_back = QBrush(palette.color(QPalette.ColorRole.AlternateBase))
    current = None
    for entry in entries:
        if entry.plugin != current:
            current = entry.plugin
            header = QStandardItem(group_title(entry, sizes[entry.plugin]))
            header.setFlags(Qt.ItemFlag.NoItemFlags)
            header.setFont(header_font)
            header.setForeground(header_text)
            header.setBackground(header_back)
            header.setData(entry.plugin, PLUGIN_ROLE)
            header.setData(True, HEADER_ROLE)
            header.setData(entry.plugin.lower(), SEARCH_ROLE)
            model.appendRow(header)
        item = QStandardItem("    " + entry.text)
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if checkable:
            flags |= Qt.ItemFlag.ItemIsUserCheckable
            item.setCheckState(Qt.CheckState.Unchecked)
        item.setFlags(flags)
        item.setData(entry.name, NAME_ROLE)
        item.setData(entry.plugin, PLUGIN_ROLE)
        item.setData(entry.haystack, SEARCH_ROLE)
        item.setData(False, HEADER_ROLE)
        if entry.tooltip:
            item.setToolTip(entry.tooltip)
        model.appendRow(item)
    return model


class SpecFilterModel(QSortFilterProxyModel):
    """Keeps spec rows whose name, label or plugin contain the search text, with their headers."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._needle = ""
        self._groups_with_match: set[str] = set()

    @property
    def search(self) -> str:
        return self._needle

    def set_search(self, text: str) -> None:
        """Filter by ``text`` (case-insensitive substring; "" shows everything)."""
        self.beginFilterChange()
        self._needle = text.strip().lower()
        self._groups_with_match = set()
        source = self.sourceModel()
        if source is not None and self._needle:
            for row in range(source.rowCount()):
                index = source.index(row, 0)
                if not index.data(HEADER_ROLE) and self._needle in (index.data(SEARCH_ROLE) or ""):
                    self._groups_with_match.add(index.data(PLUGIN_ROLE))
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(  # noqa: N802 - Qt's name
        self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex
    ) -> bool:
        if not self._needle:
            return True
        index = self.sourceModel().index(source_row, 0, source_parent)
        if index.data(HEADER_ROLE):
            return index.data(PLUGIN_ROLE) in self._groups_with_match
        return self._needle in (index.data(SEARCH_ROLE) or "")

    def spec_rows(self) -> list[int]:
        """The proxy rows that are specs (not headers), in order."""
        return [r for r in range(self.rowCount()) if not self.index(r, 0).data(HEADER_ROLE)]

    def spec_names(self) -> list[str]:
        """The names of the specs shown now, in order."""
        return [self.index(r, 0).data(NAME_ROLE) for r in self.spec_rows()]


class SpecChooserPopup(QFrame):
    """The chooser's drop-down: a search field over the grouped, filtered list."""

    chosen = Signal(str)

    _NAVIGATION = {
        Qt.Key.Key_Up: -1,
        Qt.Key.Key_Down: 1,
        Qt.Key.Key_PageUp: -10,
        Qt.Key.Key_PageDown: 10,
    }

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent, Qt.WindowType.Popup)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        self.search_edit = QLineEdit()
        self.search_edit.setObjectName("spec_search")
        self.search_edit.setPlaceholderText("Type to search by name, label or plugin…")
        self.search_edit.setClearButtonEnabled(True)
        self.proxy = SpecFilterModel(self)
        self.view = QListView()
        self.view.setObjectName("spec_list")
        self.view.setModel(self.proxy)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setUniformItemSizes(True)
        self.view.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the search field keeps the keys
        self.count_label = QLabel()
        self.count_label.setObjectName("spec_count")
        self.count_label.setEnabled(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addWidget(self.search_edit)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.count_label)
        self.search_edit.textChanged.connect(self._search_changed)
        self.search_edit.installEventFilter(self)
        self.view.clicked.connect(self._clicked)

    def set_model(self, model: QStandardItemModel) -> None:
        self.proxy.setSourceModel(model)
        self.proxy.set_search(self.search_edit.text())
        self._update_count()

    def show_for(self, current: str | None, text: str = "") -> None:
        """Fill the search field with ``text`` and highlight ``current`` (or the first match)."""
        self.search_edit.setText(text)
        self.proxy.set_search(text)
        rows = self.proxy.spec_rows()
        wanted = [r for r in rows if self.proxy.index(r, 0).data(NAME_ROLE) == current]
        self._select(wanted[0] if wanted and not text else (rows[0] if rows else None))
        self._update_count()

    def current_name(self) -> str | None:
        index = self.view.currentIndex()
        if not index.isValid() or index.data(HEADER_ROLE):
            return None
        return index.data(NAME_ROLE)

    def _select(self, row: int | None) -> None:
        if row is None:
            self.view.clearSelection()
            self.view.setCurrentIndex(QModelIndex())
            return
        index = self.proxy.index(row, 0)
        self.view.setCurrentIndex(index)
        self.view.scrollTo(index)
        if row > 0 and self.proxy.index(row - 1, 0).data(HEADER_ROLE):
            self.view.scrollTo(self.proxy.index(row - 1, 0))  # keep the group's title in view

    def _search_changed(self, text: str) -> None:
        self.proxy.set_search(text)
        rows = self.proxy.spec_rows()
        self._select(rows[0] if rows else None)
        self._update_count()

    def _update_count(self) -> None:
        shown = len(self.proxy.spec_rows())
        source = self.proxy.sourceModel()
        rows = range(source.rowCount()) if source is not None else range(0)
        total = len([r for r in rows if not source.index(r, 0).data(HEADER_ROLE)])
        self.count_label.setText(
            f"{shown} of {total}" if shown or not total else f"No match among {total}"
        )

    def _move(self, step: int) -> None:
        rows = self.proxy.spec_rows()
        if not rows:
            return
        current = self.view.currentIndex().row() if self.view.currentIndex().isValid() else -1
        position = rows.index(current) if current in rows else (-1 if step > 0 else len(rows))
        self._select(rows[max(0, min(len(rows) - 1, position + step))])

    def _clicked(self, index: QModelIndex) -> None:
        if index.isValid() and not index.data(HEADER_ROLE):
            self.view.setCurrentIndex(index)
            self._accept()

    def _accept(self) -> None:
        name = self.current_name()
        if name is not None:
            self.hide()
            self.chosen.emit(name)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if watched is self.search_edit and event.type() == QEvent.Type.KeyPress:
            assert isinstance(event, QKeyEvent)
            key = event.key()
            if key in self._NAVIGATION:
                self._move(self._NAVIGATION[Qt.Key(key)])
                return True
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self._accept()
                return True
            if key == Qt.Key.Key_Escape:
                self.hide()
                return True
        return super().eventFilter(watched, event)


class SpecChooser(QComboBox):
    """A ``QComboBox`` of specs whose popup searches and groups them by plugin.

    Fill it with ``set_specs(specs, records)``; its items are then the specs
    alone, in grouped order (``itemData(i)`` is a spec name), so code written
    for a plain combo box keeps working. ``addItem`` still works for
    placeholders ("Loading plugins…"). Typing while it has focus opens the
    popup with the typed text as the search; arrows move, Enter chooses.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMaxVisibleItems(20)
        self._entries: list[SpecEntry] = []
        self._grouped: QStandardItemModel | None = None
        self._popup: SpecChooserPopup | None = None

    @property
    def entries(self) -> list[SpecEntry]:
        """The specs shown, in display order."""
        return list(self._entries)

    def set_specs(self, specs: Mapping[str, Any], records: Mapping[str, Any] | None = None) -> None:
        """Replace the items by ``specs`` (name -> spec); the current spec is kept if still there.

        Emits ``currentIndexChanged`` only when the current spec changed.
        """
        current = self.currentData()
        entries = spec_entries(specs, records)
        blocked = self.blockSignals(True)
        try:
            self.clear()
            self._entries = entries
            for entry in self._entries:
                self.addItem(entry.text, entry.name)
                if entry.tooltip:
                    self.setItemData(self.count() - 1, entry.tooltip, Qt.ItemDataRole.ToolTipRole)
            index = self.findData(current)
        finally:
            self.blockSignals(blocked)
        self.setCurrentIndex(index if index >= 0 else (0 if self.count() else -1))

    def clear(self) -> None:
        """Remove every item; the popup's groups are rebuilt from what is added next."""
        super().clear()
        self._entries = []
        self._grouped = None

    def grouped_model(self) -> QStandardItemModel:
        """The grouped model the popup shows (built on first use after ``set_specs``)."""
        if self._grouped is None:
            entries = self._entries or [
                SpecEntry(self.itemData(i) or "", self.itemText(i), "", True)
                for i in range(self.count())
                if self.itemData(i) is not None
            ]
            self._grouped = build_spec_model(entries, parent=self)
        return self._grouped

    @property
    def popup(self) -> SpecChooserPopup:
        if self._popup is None:
            self._popup = SpecChooserPopup(self)
            self._popup.chosen.connect(self._choose)
        return self._popup

    def popup_visible(self) -> bool:
        return self._popup is not None and self._popup.isVisible()

    def showPopup(self, text: str = "") -> None:  # noqa: N802 - Qt's name
        """Open the search popup under the box, with ``text`` already typed."""
        if not self.isEnabled() or all(self.itemData(i) is None for i in range(self.count())):
            return  # empty, or only a placeholder: nothing to choose
        popup = self.popup
        popup.set_model(self.grouped_model())
        popup.show_for(self.currentData(), text)
        screen = self.screen().availableGeometry()
        width = max(self.width(), 380)
        height = min(460, max(200, screen.height() // 2))
        below = self.mapToGlobal(QPoint(0, self.height()))
        x = min(below.x(), screen.right() - width)
        y = (
            below.y()
            if below.y() + height <= screen.bottom()
            else self.mapToGlobal(QPoint()).y() - height
        )
        popup.setGeometry(max(screen.left(), x), max(screen.top(), y), width, height)
        popup.show()
        popup.search_edit.setFocus(Qt.FocusReason.PopupFocusReason)

    def hidePopup(self) -> None:  # noqa: N802 - Qt's name
        if self._popup is not None:
            self._popup.hide()
        super().hidePopup()

    def _choose(self, name: str) -> None:
        index = self.findData(name)
        if index < 0:
            return
        self.setCurrentIndex(index)
        self.activated.emit(index)
        self.setFocus(Qt.FocusReason.PopupFocusReason)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt's name
        text = event.text()
        plain = not event.modifiers() & (
            Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier
        )
        if plain and text and text.isprintable() and not text.isspace():
            self.showPopup(text)
            return
        super().keyPressEvent(event)
