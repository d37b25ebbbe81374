"""The searchable optimizer chooser over a real plugin host (built-ins plus a file plugin)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from fmnist_gui.plugins.host import get_plugin_manager
from fmnist_gui.qt.widgets.spec_chooser import (
    HEADER_ROLE,
    NAME_ROLE,
    SpecChooser,
    SpecFilterModel,
    build_spec_model,
    spec_entries,
)
from tests.support.plugin_fixtures import write_plugin

# Five optimizers in one plugin file, so the groups and the search have something to sort.
EXTRA = """
import torch
from fmnist_gui import OptimizerSpec, hookimpl

def make(cls):
    return lambda params, lr: getattr(torch.optim, cls)(params, lr=lr)

@hookimpl
def fmnist_register_optimizers():
    return [
        OptimizerSpec(name="x_" + cls.lower(), label=cls, factory=make(cls))
        for cls in ("Adagrad", "Adamax", "NAdam", "RAdam", "ASGD")
    ]
"""


@pytest.fixture
def host(tmp_path):
    write_plugin(tmp_path / "extra", "aaa_extra", EXTRA)
    return get_plugin_manager([tmp_path / "extra"], entry_points=True)


@pytest.fixture
def chooser(qtbot, host):
    box = SpecChooser()
    qtbot.addWidget(box)
    box.set_specs(host.optimizers, host.records)
    box.show()
    qtbot.waitExposed(box)
    yield box
    box.hidePopup()


def test_items_stay_one_per_spec_with_built_ins_first(host, chooser):
    names = [chooser.itemData(i) for i in range(chooser.count())]
    assert sorted(names) == sorted(host.optimizers)
    builtins = set(host.records["builtin_optimizers"].optimizers)
    assert set(names[: len(builtins)]) == builtins
    assert names[len(builtins) :] == [
        f"x_{c}" for c in ("adagrad", "adamax", "nadam", "radam", "asgd")
    ]
    assert chooser.findData("x_nadam") >= 0


def test_grouped_model_has_unselectable_headers_per_plugin(host):
    entries = spec_entries(host.optimizers, host.records)
    model = build_spec_model(entries)
    headers = [
        model.item(r).text() for r in range(model.rowCount()) if model.item(r).data(HEADER_ROLE)
    ]
    assert [h.split(" ")[0] for h in headers] == ["builtin_optimizers", "aaa_extra"]
    assert "(built-in)" in headers[0]
    assert "(built-in)" not in headers[1]
    for r in range(model.rowCount()):
        item = model.item(r)
        selectable = bool(item.flags() & Qt.ItemFlag.ItemIsSelectable)
        assert selectable != bool(item.data(HEADER_ROLE))


def test_search_matches_name_label_and_plugin_case_insensitively(host):
    proxy = SpecFilterModel()
    proxy.setSourceModel(build_spec_model(spec_entries(host.optimizers, host.records)))
    proxy.set_search("ADA")  # labels Adagrad, Adamax and the built-in Adam
    shown = proxy.spec_names()
    assert {"x_adagrad", "x_adamax", "adam"} <= set(shown)
    assert "sgd" not in shown
    assert "x_asgd" not in shown
    proxy.set_search("aaa_ext")  # the plugin's name: its whole group
    assert proxy.spec_names() == ["x_adagrad", "x_adamax", "x_nadam", "x_radam", "x_asgd"]
    headers = [r for r in range(proxy.rowCount()) if proxy.index(r, 0).data(HEADER_ROLE)]
    assert len(headers) == 1  # the built-ins' header went with its specs
    proxy.set_search("no such optimizer")
    assert proxy.rowCount() == 0
    proxy.set_search("")
    assert len(proxy.spec_names()) == len(host.optimizers)


def test_typing_opens_the_search_and_enter_chooses(qtbot, chooser):
    chooser.setCurrentIndex(chooser.findData("sgd"))
    chooser.setFocus()
    changes = []
    chooser.currentIndexChanged.connect(lambda i: changes.append(chooser.itemData(i)))
    QTest.keyClicks(chooser, "r")  # opens the popup with "r" typed
    assert chooser.popup_visible()
    popup = chooser.popup
    qtbot.waitUntil(lambda: popup.search_edit.hasFocus() or popup.isVisible(), timeout=5_000)
    QTest.keyClicks(popup.search_edit, "adam")
    assert popup.search_edit.text() == "radam"
    assert popup.proxy.spec_names() == ["x_radam"]
    assert popup.current_name() == "x_radam"
    QTest.keyClick(popup.search_edit, Qt.Key.Key_Return)
    assert not chooser.popup_visible()
    assert chooser.currentData() == "x_radam"
    assert changes == ["x_radam"]


def test_arrows_skip_group_headers_and_escape_changes_nothing(qtbot, chooser, host):
    chooser.setCurrentIndex(chooser.findData("sgd"))
    chooser.showPopup()
    popup = chooser.popup
    assert popup.current_name() == "sgd"  # opens on the current spec
    builtins = host.records["builtin_optimizers"].optimizers
    for _ in range(len(builtins)):  # past the last built-in, over the next group's header
        QTest.keyClick(popup.search_edit, Qt.Key.Key_Down)
    name = popup.current_name()
    assert name is not None
    assert name.startswith("x_")
    assert not popup.view.currentIndex().data(HEADER_ROLE)
    QTest.keyClick(popup.search_edit, Qt.Key.Key_Escape)
    assert not chooser.popup_visible()
    assert chooser.currentData() == "sgd"


def test_set_specs_keeps_the_current_choice_and_placeholders_still_work(qtbot, chooser, host):
    chooser.setCurrentIndex(chooser.findData("x_nadam"))
    fewer = {n: s for n, s in host.optimizers.items() if n != "x_asgd"}
    chooser.set_specs(fewer, host.records)
    assert chooser.currentData() == "x_nadam"
    assert chooser.findData("x_asgd") == -1
    chooser.clear()
    chooser.addItem("Loading plugins…", None)
    chooser.showPopup()  # nothing to choose: no popup
    assert not chooser.popup_visible()
    assert chooser.currentText() == "Loading plugins…"


def test_a_click_on_a_row_chooses_it(qtbot, chooser):
    chooser.showPopup()
    popup = chooser.popup
    popup.search_edit.setText("asgd")
    row = popup.proxy.spec_rows()[0]
    index = popup.proxy.index(row, 0)
    assert index.data(NAME_ROLE) == "x_asgd"
    rect = popup.view.visualRect(index)
    QTest.mouseClick(popup.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert chooser.currentData() == "x_asgd"
    assert not chooser.popup_visible()


def test_a_checkable_model_for_lists_that_pick_several(host):
    model = build_spec_model(spec_entries(host.optimizers, host.records), checkable=True)
    for r in range(model.rowCount()):
        item = model.item(r)
        checkable = bool(item.flags() & Qt.ItemFlag.ItemIsUserCheckable)
        assert checkable != bool(item.data(HEADER_ROLE))
    proxy = SpecFilterModel()
    proxy.setSourceModel(model)
    proxy.set_search("nadam")
    index = proxy.mapToSource(proxy.index(proxy.spec_rows()[0], 0))
    model.itemFromIndex(index).setCheckState(Qt.CheckState.Checked)
    checked = [
        model.item(r).data(NAME_ROLE)
        for r in range(model.rowCount())
        if model.item(r).checkState() == Qt.CheckState.Checked
    ]
    assert checked == ["x_nadam"]


def test_items_added_by_hand_after_clear_are_what_the_popup_offers(qtbot, chooser):
    chooser.clear()
    chooser.addItem("Only one", "only_one")
    chooser.showPopup()
    assert chooser.popup.proxy.spec_names() == ["only_one"]
    QTest.keyClick(chooser.popup.search_edit, Qt.Key.Key_Return)
    assert chooser.currentData() == "only_one"
