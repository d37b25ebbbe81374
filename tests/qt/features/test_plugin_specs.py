"""Single specs in the app: the manager's spec list, turning one off, the chooser in the forms.

Real window offscreen, real plugin host with a real plugin file (three
optimizers, one of which the self-test refuses), real training.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtTest import QTest

from fmnist_gui.plugins.host import get_plugin_manager
from fmnist_gui.plugins.installer import PluginSettings
from fmnist_gui.qt.features.plugins.dialogs import PluginManagerDialog
from tests.plugins.test_spec_disable import TWO
from tests.support import qt_helpers
from tests.support.plugin_fixtures import forgetting_plugin_modules, write_plugin
from tests.support.qt_helpers import close_window

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(autouse=True)
def _forget_plugin_modules():
    with forgetting_plugin_modules():
        yield


@pytest.fixture
def app(qtbot, tiny_root, tmp_path):
    write_plugin(tmp_path / "plugins", "two", TWO)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = qt_helpers.open_window(
        qtbot, tiny_root, get_plugin_manager([tmp_path / "plugins"]), settings
    )
    window.insight.build_views()
    yield window
    window.training.dirty = False
    close_window(qtbot, window)


@pytest.fixture
def manager(app, qtbot):
    dialog = PluginManagerDialog(app.window)
    qtbot.addWidget(dialog)
    dialog.tabs.setCurrentIndex(1)
    return dialog


def names(combo) -> list[str]:
    return [combo.itemData(i) for i in range(combo.count())]


def row_of(dialog, name: str) -> int:
    return [s.name for s in dialog.spec_rows()].index(name)


def test_every_spec_is_listed_and_filtered_by_status_and_text(app, manager):
    rows = {s.name: s for s in manager.spec_rows()}
    assert rows["two_stuck"].status == "refused"
    assert rows["two_nadam"].status == "offered"
    assert set(app.backend.plugins.optimizers) <= set(rows)
    table = manager.spec_table
    assert table.rowCount() == len(rows)
    stuck = row_of(manager, "two_stuck")
    assert "did not go down" in table.item(stuck, 7).text()
    assert table.item(stuck, 6).text().endswith("ms")  # its self-test time
    assert not table.item(stuck, 0).flags() & Qt.ItemFlag.ItemIsUserCheckable

    manager.status_filter.setCurrentIndex(manager.status_filter.findData("refused"))
    assert [s.name for s in manager.spec_rows()] == ["two_stuck"]
    assert table.rowCount() == 1
    manager.status_filter.setCurrentIndex(0)
    manager.spec_search.setText("NADAM")
    assert [s.name for s in manager.spec_rows()] == ["two_nadam"]
    assert "1 shown" in manager.spec_count.text()
    assert "1 refused" in manager.spec_count.text()


def test_a_disabled_spec_leaves_both_choosers_and_comes_back_off_thread(app, manager, qtbot):
    panel, race = app.training.panel, app.compare.race_view
    assert "two_nadam" in names(panel.optimizer_combo)
    assert "two_nadam" in names(race.optimizer_combo)
    manager.spec_table.item(row_of(manager, "two_nadam"), 0).setCheckState(Qt.CheckState.Unchecked)
    assert "two_nadam" not in names(panel.optimizer_combo)
    assert "two_nadam" not in names(race.optimizer_combo)
    assert "two_adagrad" in names(race.optimizer_combo)  # only that one spec went
    assert PluginSettings.load().disabled_specs == {"optimizer:two_nadam"}
    assert manager.spec_rows()[row_of(manager, "two_nadam")].status == "disabled"

    manager.status_filter.setCurrentIndex(manager.status_filter.findData("disabled"))
    assert [s.name for s in manager.spec_rows()] == ["two_nadam"]
    manager.spec_table.item(0, 0).setCheckState(Qt.CheckState.Checked)
    assert manager.task is not None  # self-tested in a worker thread
    assert manager.progress.isVisibleTo(manager)
    assert not manager.tabs.isEnabled()
    qtbot.waitUntil(lambda: manager.task is None, timeout=60_000)
    assert not manager.progress.isVisibleTo(manager)
    assert manager.spec_rows() == []  # nothing is disabled any more
    assert "two_nadam" in names(panel.optimizer_combo)
    assert "two_nadam" in names(race.optimizer_combo)
    assert PluginSettings.load().disabled_specs == set()


def test_a_live_model_whose_spec_is_disabled_keeps_its_settings_but_cannot_continue(
    app, manager, qtbot
):
    panel = app.training.panel
    panel.optimizer_combo.setCurrentIndex(panel.optimizer_combo.findData("two_adagrad"))
    panel.epochs_spin.setValue(1)
    app.training.start()
    qtbot.waitUntil(lambda: app.training.trainer.global_step >= 2, timeout=60_000)
    app.training.stop()
    qtbot.waitUntil(lambda: app.window.state == "idle" and app.training.job is None, timeout=60_000)
    trainer = app.training.trainer
    steps = trainer.global_step

    manager.set_spec_enabled("optimizer:two_adagrad", False)
    start = app.window.actions["start"]
    assert not start.isEnabled()
    assert "is disabled" in start.statusTip()
    assert "Adagrad" in start.statusTip()
    model = app.training.model_panel
    assert model.rows["optimizer"].text().startswith("Adagrad")  # still shown as it is
    assert "is disabled" in model.problem.text()
    app.training.start()
    assert app.training.job is None
    assert trainer.global_step == steps

    manager.set_spec_enabled("optimizer:two_adagrad", True)
    qtbot.waitUntil(lambda: manager.task is None, timeout=60_000)
    assert start.isEnabled()


def test_typing_in_the_training_form_chooser_searches_and_enter_picks(app, qtbot):
    combo = app.training.panel.optimizer_combo
    combo.setFocus()
    QTest.keyClicks(combo, "n")
    popup = combo.popup
    assert popup.isVisible()
    QTest.keyClicks(popup.search_edit, "ada")
    assert popup.proxy.spec_names() == ["two_nadam"]
    QTest.keyClick(popup.search_edit, Qt.Key.Key_Return)
    assert combo.currentData() == "two_nadam"
    form = app.training.panel.optimizer_form
    assert "NAdam" in form.title()
