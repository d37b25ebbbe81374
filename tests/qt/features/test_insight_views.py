"""The Predictions gallery and the confusion matrix, as real widgets offscreen."""

from __future__ import annotations

import pytest
import torch
from PySide6.QtCore import Qt

from fmnist_gui.analysis import insight
from fmnist_gui.analysis.insight import GalleryFilter
from fmnist_gui.qt.features.insight.views import (
    ConfusionView,
    PredictionsView,
    connect_drilldown,
    crisp,
    image_to_qimage,
    text_color_on,
)
from fmnist_gui.training.config import TrainConfig
from fmnist_gui.training.data import CLASS_NAMES
from fmnist_gui.training.trainer import Trainer


@pytest.fixture
def model(tiny_data, plugins):
    # One short epoch: right on most images, wrong on some, so both kinds show.
    trainer = Trainer(TrainConfig(epochs=1, batch_size=64, lr=0.05, seed=4), tiny_data, plugins)
    for _ in trainer.run():
        pass
    return trainer.model


@pytest.fixture
def views(qtbot, model, tiny_data):
    gallery, confusion = PredictionsView(), ConfusionView()
    for widget in (gallery, confusion):
        qtbot.addWidget(widget)
        widget.resize(1280, 800)
        widget.show()
    predictions = gallery.set_model(model, tiny_data.test)
    confusion.set_predictions(predictions, "epoch 1")
    connect_drilldown(confusion, gallery)
    return gallery, confusion, predictions


def test_gallery_labels_match_the_models_predictions(views, model, tiny_data):
    gallery, _, _ = views
    with torch.no_grad():
        logits = model(tiny_data.test.images.unsqueeze(1).float() / 255)
    expected = logits.argmax(1)
    shown = [t for t in gallery.tiles if t.index is not None]
    assert len(shown) == 36
    for tile in shown:
        assert tile.predicted_class == int(expected[tile.index])
        assert tile.true_class == int(tiny_data.test.labels[tile.index])
        first, second = tile.caption()
        assert CLASS_NAMES[tile.predicted_class] in first
        assert second == f"true: {CLASS_NAMES[tile.true_class]}"
        assert first.startswith("\u2713" if tile.correct else "\u2717")
    # Hardest first: the true class's probability never falls along the grid.
    confidence = torch.softmax(logits, 1)[torch.arange(len(expected)), tiny_data.test.labels]
    values = [float(confidence[t.index]) for t in shown]
    assert values == sorted(values)


def test_matrix_sums_to_the_test_set(views, tiny_data):
    _, confusion, predictions = views
    assert int(confusion.matrix.sum()) == len(tiny_data.test)
    assert torch.equal(confusion.matrix, insight.confusion_matrix(predictions))


def test_clicking_a_cell_filters_the_gallery_to_exactly_that_cell(qtbot, views):
    gallery, confusion, predictions = views
    matrix = confusion.matrix.clone()
    matrix.fill_diagonal_(-1)  # pick the busiest mistake: a cell with several images
    t, p = divmod(int(matrix.argmax()), 10)
    expected = ((predictions.labels == t) & (predictions.predicted == p)).nonzero().flatten()
    assert 0 < len(expected) <= 36

    with qtbot.waitSignal(confusion.cell_activated) as blocker:
        qtbot.mouseClick(
            confusion, Qt.MouseButton.LeftButton, pos=confusion.cell_rect(t, p).center()
        )
    assert blocker.args == [t, p]
    assert sorted(gallery.shown_indices()) == expected.tolist()
    assert gallery.gallery_filter() == GalleryFilter.cell(t, p)
    assert gallery.true_combo.currentData() == t
    assert gallery.predicted_combo.currentData() == p
    assert all(tile.index is None for tile in gallery.tiles[len(expected) :])


def test_filters_from_the_controls(views):
    gallery, _, predictions = views
    gallery.wrong_only.setChecked(True)
    wrong = set((predictions.predicted != predictions.labels).nonzero().flatten().tolist())
    assert gallery.shown_indices()
    assert set(gallery.shown_indices()) <= wrong
    gallery.wrong_only.setChecked(False)
    gallery.true_combo.setCurrentIndex(gallery.true_combo.findData(3))
    assert all(int(predictions.labels[i]) == 3 for i in gallery.shown_indices())
    gallery.sort_combo.setCurrentIndex(gallery.sort_combo.findData("random"))
    assert (
        sorted(gallery.shown_indices())
        == sorted((predictions.labels == 3).nonzero().flatten().tolist())[:36]
    )


def test_clicking_an_image_shows_its_probabilities(qtbot, views):
    gallery, _, predictions = views
    tile = gallery.tiles[4]
    with qtbot.waitSignal(gallery.image_activated) as blocker:
        qtbot.mouseClick(tile, Qt.MouseButton.LeftButton, pos=tile.image_rect().center())
    assert blocker.args == [tile.index]
    assert gallery.detail.index == tile.index
    assert gallery.detail.probabilities == pytest.approx(
        predictions.probabilities[tile.index].tolist()
    )
    assert list(gallery.detail.bars.opts["width"]) == pytest.approx(
        predictions.probabilities[tile.index].tolist()
    )


def test_images_are_magnified_crisply(tiny_data):
    image = tiny_data.test.images[0]
    big = crisp(image_to_qimage(image), 3)
    assert (big.width(), big.height()) == (84, 84)
    for y in range(84):
        for x in range(84):
            assert big.pixelColor(x, y).red() == int(image[y // 3, x // 3])


def test_contact_sheet_and_readable_cell_text(views, tmp_path, monkeypatch):
    from PySide6.QtGui import QImage

    from fmnist_gui.qt.features.insight import views as insight_views

    gallery, confusion, _ = views
    path = tmp_path / "sheet"
    monkeypatch.setattr(
        insight_views.QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(path), ""))
    )
    assert gallery.sheet_button.isEnabled()
    gallery.sheet_button.click()
    saved = QImage(str(tmp_path / "sheet.png"))  # the suffix is added
    assert (saved.width(), saved.height()) == (6 * (28 * 3 + 16), 28 + 6 * (28 * 3 + 12 + 34))
    sheet = gallery.contact_sheet()
    assert sheet.width() == 6 * (28 * 3 + 16)
    for t in range(10):
        for p in range(10):
            fill = confusion.cell_color(t, p)
            assert text_color_on(fill).name() in ("#000000", "#ffffff")
    assert text_color_on(confusion.cell_color(0, 0).darker(400)).name() == "#ffffff"


def test_saving_a_contact_sheet_says_where(views, tmp_path, monkeypatch):
    from fmnist_gui.qt.features.insight import views as insight_views

    gallery, _, _ = views
    path = tmp_path / "sheet.png"
    monkeypatch.setattr(
        insight_views.QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(path), ""))
    )
    messages = []
    gallery.message.connect(messages.append)
    gallery.sheet_button.click()
    assert path.exists()
    assert messages == [f"Saved the contact sheet to {path}"]


def test_gallery_pages_through_every_match(views, tiny_data):
    gallery, _, predictions = views
    everything = insight.select(predictions, GalleryFilter(), "hardest", limit=None)
    assert len(everything) > 36  # the tiny test set has more than a page
    pages = []
    assert not gallery.previous_button.isEnabled()
    while True:
        pages.append(gallery.shown_indices())
        assert f"page {len(pages)} of {gallery.page_count()}" in gallery.caption.text()
        if not gallery.next_button.isEnabled():
            break
        gallery.next_button.click()
    assert [i for page in pages for i in page] == everything
    assert gallery.previous_button.isEnabled()
    gallery.previous_button.click()
    assert gallery.shown_indices() == pages[-2]
    # A new filter starts again at its first page.
    gallery.wrong_only.setChecked(True)
    assert gallery.page == 0


def test_narrow_tiles_elide_the_name_and_keep_the_percent(views):
    gallery, _, _ = views
    gallery.resize(560, 420)
    for tile in gallery.tiles:
        if tile.index is None:
            continue
        tile.resize(56, tile.height())
        first, second = tile.fitted_caption()
        assert first.endswith(f"{tile.confidence:.0%}"), first
        assert tile.fontMetrics().horizontalAdvance(second) <= tile.width()
