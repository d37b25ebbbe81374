"""The insight tabs inside the real main window, offscreen, on tiny data."""

from __future__ import annotations

import csv
import io

import pytest
import torch
from PySide6.QtCore import QSettings, Qt

from fmnist_gui.analysis.insight import GalleryFilter
from fmnist_gui.qt.app import build_app

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def app(qtbot, tiny_root, plugins, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = build_app(tiny_root, plugins=plugins, settings=settings)
    qtbot.addWidget(w.window)
    w.window.show()
    w.start_loading()
    qtbot.waitUntil(lambda: w.window.state == "idle" and w.insight.ready, timeout=30_000)
    yield w
    w.shutdown(30_000)
    qtbot.waitUntil(
        lambda: w.training.job is None and not w.insight.busy() and not w.compare.running,
        timeout=30_000,
    )


def test_tabs_are_added_once_the_backend_is_ready(app):
    titles = [app.window.tabs.tabText(i) for i in range(app.window.tabs.count())]
    assert titles[0] == "Training"
    # The insight tabs follow Training; the Sweep tab (its own feature) comes last.
    assert titles[1:] == ["Predictions", "Confusion", "Compare", "Runs", "S&weep"]
    assert app.compare.race_view.plugins is app.backend.plugins
    assert app.compare.race_view.start_button.isEnabled()


def test_training_run_feeds_runs_gallery_and_matrix(qtbot, app):
    app.training.panel.epochs_spin.setValue(1)
    app.training.panel.batch_spin.setValue(32)
    app.training.panel.seed_edit.setText("3")
    app.training.start()
    qtbot.waitUntil(lambda: app.training.job is None and app.window.state == "idle", timeout=60_000)
    insight = app.insight
    runs = list(app.runs.runs)
    assert [(r.source, len(r.epochs), r.status) for r in runs] == [("training", 1, "finished")]
    assert runs[0].batch_losses == app.training.trainer.history.batch_losses

    app.window.tabs.setCurrentWidget(insight.predictions_view)
    qtbot.waitUntil(
        lambda: insight.predictions_view.predictions is not None and not insight.busy(),
        timeout=30_000,
    )
    test = app.backend.data.test
    with torch.no_grad():
        expected = app.training.trainer.model(test.images.unsqueeze(1).float() / 255).argmax(1)
    tiles = [t for t in insight.predictions_view.tiles if t.index is not None]
    assert tiles
    assert all(t.predicted_class == int(expected[t.index]) for t in tiles)
    matrix = insight.confusion_view.matrix
    assert int(matrix.sum()) == len(test)

    # Drill down from the Confusion tab: the gallery takes over with that cell.
    app.window.tabs.setCurrentWidget(insight.confusion_view)
    t, p = divmod(int(matrix.argmax()), 10)
    qtbot.mouseClick(
        insight.confusion_view,
        Qt.MouseButton.LeftButton,
        pos=insight.confusion_view.cell_rect(t, p).center(),
    )
    assert app.window.tabs.currentWidget() is insight.predictions_view
    assert insight.predictions_view.gallery_filter() == GalleryFilter.cell(t, p)
    shown = insight.predictions_view.shown_indices()
    assert len(shown) == min(36, int(matrix[t, p]))
    assert all(int(test.labels[i]) == t and int(expected[i]) == p for i in shown)


def click_stop_and_quit(box) -> None:
    from PySide6.QtWidgets import QMessageBox

    role = QMessageBox.ButtonRole.DestructiveRole
    next(b for b in box.buttons() if box.buttonRole(b) == role).click()


def test_closing_during_a_race_asks_then_stops_it_then_closes(qtbot, app, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    race_view = app.compare.race_view
    race_view.batch_spin.setValue(4)
    race_view.epochs_spin.setValue(50)
    assert race_view.start()
    monkeypatch.setattr(QMessageBox, "open", lambda self: None)  # never shown
    app.window.close()
    box = app.training.quit_box  # the race is not dropped without a question
    assert box is not None
    assert "race" in box.text()
    assert race_view.running
    box.button(QMessageBox.StandardButton.Cancel).click()
    assert race_view.running
    assert app.window.isVisible()
    app.window.close()
    click_stop_and_quit(app.training.quit_box)
    assert app.window.isVisible()  # not yet: the race stops cooperatively first
    qtbot.waitUntil(lambda: not app.window.isVisible(), timeout=30_000)
    assert not race_view.running
    assert {r.status for r in app.runs.runs} == {"stopped"}


def test_unsaved_training_is_asked_about_before_a_race_is_stopped(qtbot, app, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    app.training.panel.epochs_spin.setValue(1)
    app.training.panel.batch_spin.setValue(32)
    app.training.start()
    qtbot.waitUntil(lambda: app.training.job is None and app.window.state == "idle", timeout=60_000)
    assert app.checkpoints.unsaved
    race_view = app.compare.race_view
    race_view.batch_spin.setValue(4)
    race_view.epochs_spin.setValue(50)
    assert race_view.start()
    monkeypatch.setattr(QMessageBox, "open", lambda self: None)  # never shown
    app.window.close()
    box = app.checkpoints.quit_box
    assert box is not None
    assert "Save it before quitting?" in box.text()
    assert race_view.running  # not stopped for a question that may be cancelled
    box.button(QMessageBox.StandardButton.Cancel).click()
    assert race_view.running
    assert app.window.isVisible()

    app.window.close()
    app.checkpoints.quit_box.button(QMessageBox.StandardButton.Discard).click()
    race_box = app.training.quit_box  # then the race is asked about
    assert race_box is not None
    assert race_view.running
    click_stop_and_quit(race_box)
    assert app.window.isVisible()  # now the race stops first, then the window closes
    qtbot.waitUntil(lambda: not app.window.isVisible(), timeout=30_000)
    assert not race_view.running


def test_start_waits_while_a_race_runs(qtbot, app):
    race_view = app.compare.race_view
    race_view.batch_spin.setValue(4)
    race_view.epochs_spin.setValue(50)
    assert race_view.start()
    start = app.window.actions["start"]
    assert not start.isEnabled()
    assert "race" in start.statusTip()
    app.training.start()  # F5 from a shortcut elsewhere: refused, with the reason
    assert app.training.job is None
    assert app.training.trainer is None
    assert "race" in app.window.statusBar().currentMessage()
    with qtbot.waitSignal(race_view.race_finished, timeout=30_000):
        race_view.stop()
    assert start.isEnabled()
    app.training.start()
    assert app.training.job is not None
    app.training.stop()
    qtbot.waitUntil(lambda: app.training.job is None, timeout=30_000)
    app.training.dirty = False


def test_resume_waits_while_a_race_runs(qtbot, app):
    app.training.panel.epochs_spin.setValue(50)
    app.training.start()
    qtbot.waitUntil(lambda: app.training.trainer.global_step >= 2, timeout=30_000)
    app.training.toggle_pause()
    assert app.window.state == "paused"
    race_view = app.compare.race_view
    race_view.batch_spin.setValue(4)
    race_view.epochs_spin.setValue(50)
    assert race_view.start()  # allowed while the training is paused
    assert not app.window.actions["pause"].isEnabled()  # Resume
    app.training.toggle_pause()  # from a shortcut elsewhere: refused, with the reason
    assert app.window.state == "paused"
    assert "race" in app.window.statusBar().currentMessage()
    with qtbot.waitSignal(race_view.race_finished, timeout=30_000):
        race_view.stop()
    assert app.window.actions["pause"].isEnabled()
    app.training.toggle_pause()
    assert app.window.state == "running"
    app.training.stop()
    qtbot.waitUntil(lambda: app.training.job is None, timeout=30_000)
    app.training.dirty = False


def test_runs_survive_a_checkpoint_round_trip(qtbot, app, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from fmnist_gui import checkpoint as ckpt

    app.training.panel.epochs_spin.setValue(1)
    app.training.panel.batch_spin.setValue(32)
    app.training.start()
    qtbot.waitUntil(lambda: app.training.job is None and app.window.state == "idle", timeout=60_000)
    runs = app.runs
    race_view = app.compare.race_view
    race_view.epochs_spin.setValue(1)
    with qtbot.waitSignal(race_view.race_finished, timeout=60_000):
        race_view.start()
    runs.runs.rename(list(runs.runs)[1].id, "my sgd")
    before = runs.runs.to_state()
    assert len(before) == 4

    path = tmp_path / "session.pt"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(path), ""))
    )
    app.window.actions["save"].trigger()
    qtbot.waitUntil(path.is_file, timeout=30_000)
    assert ckpt.read_checkpoint(path)["extra"]["runs"] == before

    runs.runs.clear()
    assert app.checkpoints.open(path)
    qtbot.waitUntil(lambda: len(runs.runs) == 4, timeout=30_000)
    assert runs.runs.to_state() == before  # nothing lost, no duplicate training run
    assert runs.training_run_id == before[0]["id"]


def test_runs_table_and_csv_show_the_runs_true_epochs_and_seed(qtbot, app):
    panel = app.training.panel
    panel.epochs_spin.setValue(3)
    panel.batch_spin.setValue(64)
    panel.seed_edit.setText("")
    app.training.start()
    qtbot.waitUntil(lambda: app.training.trainer is not None, timeout=30_000)
    qtbot.waitUntil(lambda: app.training.trainer.epochs_done >= 1, timeout=60_000)
    app.training.stop()
    qtbot.waitUntil(lambda: app.training.job is None and app.window.state == "idle", timeout=60_000)
    trainer = app.training.trainer
    # Continue the same model with a smaller total than the form first had.
    panel.epochs_spin.setValue(trainer.epochs_done + 1)
    app.training.start()
    qtbot.waitUntil(lambda: app.training.job is None and app.window.state == "idle", timeout=60_000)
    assert trainer.finished
    (run,) = list(app.runs.runs)
    assert run.config["seed"] == trainer.seed
    assert run.config["epochs"] == trainer.config.epochs
    view = app.runs.runs_view
    app.window.tabs.setCurrentWidget(view)
    view.refill()
    epochs_column = view.COLUMNS.index("Epochs")
    done = trainer.epochs_done
    assert view.table.item(0, epochs_column).text() == f"{done}/{trainer.config.epochs}"
    last = list(csv.DictReader(io.StringIO(app.runs.runs.csv_text())))[-1]
    assert last["seed"] == str(trainer.seed)
    assert last["epochs"] == str(trainer.config.epochs)


def test_past_runs_come_back_with_details_and_their_settings(qtbot, app, tmp_path):
    from fmnist_gui.analysis.runs import RunList, RunStore
    from fmnist_gui.qt.app import build_app
    from fmnist_gui.system.paths import user_data_dir

    panel = app.training.panel
    panel.epochs_spin.setValue(1)
    panel.batch_spin.setValue(32)
    panel.lr_edit.setText("0.02")
    panel.seed_edit.setText("")
    app.training.start()
    qtbot.waitUntil(lambda: app.training.job is None and app.window.state == "idle", timeout=60_000)
    seed = app.training.trainer.seed
    # What the next start of the app finds in the user data folder.
    stored = RunList()
    RunStore(user_data_dir() / "runs.sqlite").follow(stored)
    (run,) = list(stored)
    assert (run.config["lr"], run.config["batch_size"], run.config["seed"]) == (0.02, 32, seed)
    assert len(run.epochs) == 1
    assert run.status == "finished"

    settings = QSettings(str(tmp_path / "settings2.ini"), QSettings.Format.IniFormat)
    second = build_app(app.backend.data_dir, plugins=app.backend.plugins, settings=settings)
    qtbot.addWidget(second.window)
    second.window.show()
    second.start_loading()
    qtbot.waitUntil(lambda: second.window.state == "idle" and second.insight.ready, timeout=30_000)
    try:
        assert [r.name for r in second.runs.runs] == [run.name]
        view = second.runs.runs_view
        second.window.tabs.setCurrentWidget(view)
        view.table.selectRow(0)
        text = view.details.toPlainText()
        assert "0.02" in text
        assert str(seed) in text
        assert "Test accuracy" in text
        second.training.panel.lr_edit.setText("0.5")
        second.training.panel.batch_spin.setValue(64)
        view.use_button.click()
        config = second.training.panel.config()
        assert (config.lr, config.batch_size, config.seed) == (0.02, 32, seed)
        assert second.window.tabs.currentIndex() == 0
    finally:
        second.shutdown(30_000)


@pytest.mark.parametrize("size", [(1024, 640), (1280, 800)])
def test_insight_tabs_clip_nothing(qtbot, app, size):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QAbstractButton, QGroupBox, QLabel, QTableView

    app.window.resize(*size)
    assert app.window.minimumSizeHint().width() <= size[0]
    # The whole window fits on such a screen with room for a title bar.
    assert app.window.minimumSizeHint().height() <= size[1] - 40
    insight = app.insight
    for view in (
        insight.predictions_view,
        insight.confusion_view,
        app.compare.race_view,
        app.runs.runs_view,
    ):
        app.window.tabs.setCurrentWidget(view)
        qtbot.wait(50)
        assert view.width() >= view.minimumSizeHint().width(), view.objectName()
        for widget in view.findChildren(QLabel) + view.findChildren(QAbstractButton):
            if not widget.isVisibleTo(view) or not widget.text():
                continue
            if isinstance(widget, QLabel) and widget.wordWrap():
                continue  # wraps instead of clipping
            assert widget.width() >= widget.minimumSizeHint().width(), (
                view.objectName(),
                widget.text(),
            )
        for group in view.findChildren(QGroupBox):
            if group.isVisibleTo(view):
                assert group.height() >= group.minimumSizeHint().height(), group.title()
        for table in view.findChildren(QTableView):
            header = table.horizontalHeader()
            if not table.isVisibleTo(view) or header.isHidden():
                continue
            for column in range(header.count()):  # a table scrolls; its headers stay whole
                if not header.isSectionHidden(column):
                    assert header.sectionSize(column) >= header.sectionSizeHint(column), (
                        view.objectName(),
                        table.model().headerData(column, Qt.Orientation.Horizontal),
                    )
