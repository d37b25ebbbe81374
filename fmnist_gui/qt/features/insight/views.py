"""The Predictions gallery and the confusion matrix.

Both views show one ``fmnist_gui.analysis.insight.Predictions`` (every test image's ten
class probabilities), so what the matrix counts is exactly what the gallery
lists. Images are 28x28 uint8 drawn at whole-number magnifications with
``Qt.FastTransformation``: nearest-neighbour, so pixels stay crisp squares.

Colours come from the widget's palette, or are mixed from it, so both views
read well in light and dark themes; text on coloured cells is black or white
depending on the cell's luminance.
"""

from __future__ import annotations

import math

import pyqtgraph as pg
import torch
from PySide6.QtCore import QMetaMethod, QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QImage,
    QMouseEvent,
    QPainter,
    QPalette,
    QPen,
)
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from fmnist_gui.analysis import insight
from fmnist_gui.analysis.insight import GalleryFilter, Predictions, SortKind
from fmnist_gui.training.data import CLASS_NAMES, Split

GRID_ROWS = GRID_COLUMNS = 6
WRONG = QColor("#e0393e")  # a red that reads on white and on near-black
RIGHT = QColor("#2e9e4f")
CAPTION_LINES = 2


# ----- colour helpers ------------------------------------------------------------------
def luminance(color: QColor) -> float:
    """Relative luminance (WCAG), 0 black .. 1 white."""

    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in (color.redF(), color.greenF(), color.blueF()))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def text_color_on(fill: QColor) -> QColor:
    """Black or white, whichever contrasts more with ``fill``."""
    lum = luminance(fill)
    return QColor("black") if (lum + 0.05) / 0.05 > 1.05 / (lum + 0.05) else QColor("white")


def mix(a: QColor, b: QColor, t: float) -> QColor:
    """``a`` blended towards ``b`` by ``t`` (0..1)."""
    t = min(max(t, 0.0), 1.0)
    return QColor.fromRgbF(
        *(
            x + (y - x) * t
            for x, y in zip(
                (a.redF(), a.greenF(), a.blueF()), (b.redF(), b.greenF(), b.blueF()), strict=True
            )
        )
    )


def image_to_qimage(image: torch.Tensor) -> QImage:
    """A 28x28 uint8 tensor as a grayscale QImage that owns its pixels."""
    array = image.detach().to("cpu", torch.uint8).contiguous().numpy()
    height, width = array.shape
    return QImage(array.tobytes(), width, height, width, QImage.Format.Format_Grayscale8).copy()


def crisp(image: QImage, scale: int) -> QImage:
    """Magnify by a whole number with nearest-neighbour sampling (never smooth)."""
    scale = max(1, int(scale))
    return image.scaled(
        image.width() * scale,
        image.height() * scale,
        Qt.AspectRatioMode.IgnoreAspectRatio,
        Qt.TransformationMode.FastTransformation,
    )


# ----- one gallery tile ------------------------------------------------------------------
class ImageTile(QWidget):
    """A test image with its predicted and true class; a red frame when wrong."""

    clicked = Signal(int)  # index into the test split

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.index: int | None = None
        self.true_class = self.predicted_class = -1
        self.confidence = 0.0  # probability of the predicted class
        self.selected = False
        self._image: QImage | None = None
        self._scaled: QImage | None = None
        self.setMinimumSize(QSize(28 + 8, 28 + 8 + 2 * 14))
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    @property
    def correct(self) -> bool:
        return self.true_class == self.predicted_class

    def show_image(
        self,
        index: int | None,
        image: torch.Tensor | None = None,
        true_class: int = -1,
        predicted_class: int = -1,
        confidence: float = 0.0,
    ) -> None:
        self.index = index
        self.true_class, self.predicted_class, self.confidence = (
            true_class,
            predicted_class,
            confidence,
        )
        self._image = image_to_qimage(image) if image is not None else None
        self._scaled = None
        self.selected = False
        tip = ""
        if index is not None:
            tip = (
                f"Test image #{index}\nPredicted: {CLASS_NAMES[predicted_class]} "
                f"({confidence:.0%})\nTrue: {CLASS_NAMES[true_class]}"
            )
        self.setToolTip(tip)
        self.update()

    def caption(self) -> tuple[str, str]:
        """The two caption lines, as drawn (tests read them)."""
        if self.index is None:
            return "", ""
        mark = "\u2713" if self.correct else "\u2717"
        return (
            f"{mark} {CLASS_NAMES[self.predicted_class]} {self.confidence:.0%}",
            f"true: {CLASS_NAMES[self.true_class]}",
        )

    def _bold_font(self) -> QFont:
        bold = QFont(self.font())
        bold.setBold(True)
        return bold

    def fitted_caption(self) -> tuple[str, str]:
        """The caption lines as they fit the tile's width (tests read them).

        A narrow tile elides the class name and keeps the confidence, the number
        a user compares from tile to tile.
        """
        first, second = self.caption()
        if self.index is None:
            return first, second
        width = self.width()
        bold = QFontMetrics(self._bold_font())
        if bold.horizontalAdvance(first) > width:
            mark = "\u2713" if self.correct else "\u2717"
            percent = f" {self.confidence:.0%}"
            room = width - bold.horizontalAdvance(mark + " " + percent)
            name = bold.elidedText(
                CLASS_NAMES[self.predicted_class], Qt.TextElideMode.ElideRight, max(room, 0)
            )
            first = f"{mark} {name}{percent}" if name else f"{mark}{percent}"
        second = self.fontMetrics().elidedText(second, Qt.TextElideMode.ElideRight, width)
        return first, second

    def _line_height(self) -> int:
        return self.fontMetrics().height()

    def image_rect(self) -> QRect:
        """Where the image is drawn: the largest square that fits above the caption.

        The magnification may be fractional (the grid must fit a 800-pixel-high
        window), but sampling is always nearest-neighbour, never smoothed.
        """
        text_h = CAPTION_LINES * self._line_height() + 2
        size = max(28, min(self.width() - 8, self.height() - 6 - text_h))
        return QRect((self.width() - size) // 2, 3, size, size)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if self.index is None or self._image is None:
            return
        painter = QPainter(self)
        palette = self.palette()
        rect = self.image_rect()
        if self._scaled is None or self._scaled.width() != rect.width():
            self._scaled = self._image.scaled(
                rect.size(),
                Qt.AspectRatioMode.IgnoreAspectRatio,
                Qt.TransformationMode.FastTransformation,
            )
        painter.drawImage(rect.topLeft(), self._scaled)
        # The frame: thick red when wrong, a thin neutral line when right.
        if not self.correct:
            painter.setPen(QPen(WRONG, 3))
            painter.drawRect(rect.adjusted(-2, -2, 1, 1))
        else:
            painter.setPen(QPen(palette.color(QPalette.ColorRole.Mid), 1))
            painter.drawRect(rect.adjusted(-1, -1, 0, 0))
        if self.selected:
            painter.setPen(
                QPen(palette.color(QPalette.ColorRole.Highlight), 2, Qt.PenStyle.DashLine)
            )
            painter.drawRect(rect.adjusted(-4, -4, 3, 3))
        first, second = self.fitted_caption()
        line_h = self._line_height()
        text_rect = QRect(0, rect.bottom() + 3, self.width(), line_h)
        font = painter.font()
        painter.setFont(self._bold_font())
        painter.setPen(WRONG if not self.correct else palette.color(QPalette.ColorRole.Text))
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignHCenter, first)
        painter.setFont(font)
        painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
        painter.drawText(text_rect.translated(0, line_h), Qt.AlignmentFlag.AlignHCenter, second)
        painter.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self.index is not None and event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit(self.index)
        super().mousePressEvent(event)


# ----- the large view with the probability bars ---------------------------------------------
class ImageDetail(QWidget):
    """One test image, large, with its ten class probabilities as horizontal bars."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.index: int | None = None
        self.probabilities: list[float] = []
        self.image_label = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.image_label.setMinimumSize(28 * 4, 28 * 4)
        self.title = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.title.setWordWrap(True)
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(False, False)
        self.plot.hideButtons()
        self.plot.setXRange(0, 1, padding=0.02)
        self.plot.setYRange(-0.6, 9.6, padding=0)
        self.plot.getAxis("left").setTicks([[(i, name) for i, name in enumerate(CLASS_NAMES)]])
        self.plot.getAxis("bottom").setTicks([[(v / 4, f"{v * 25}%") for v in range(5)]])
        self.plot.getViewBox().invertY(True)  # T-shirt on top, as in the matrix
        self.plot.setMinimumHeight(180)
        self.bars = pg.BarGraphItem(x0=[0] * 10, y=list(range(10)), height=0.7, width=[0] * 10)
        self.plot.addItem(self.bars)
        self.values = [pg.TextItem(anchor=(0, 0.5)) for _ in CLASS_NAMES]
        for c, item in enumerate(self.values):
            item.setPos(0, c)
            self.plot.addItem(item)
        layout = QVBoxLayout(self)
        layout.addWidget(self.image_label, 3)
        layout.addWidget(self.title)
        layout.addWidget(self.plot, 2)
        self._apply_palette()

    def show_image(
        self, index: int, image: torch.Tensor, probabilities: torch.Tensor, true_class: int
    ) -> None:
        self.index = index
        self.probabilities = [float(p) for p in probabilities]
        predicted = int(torch.as_tensor(probabilities).argmax())
        side = min(self.image_label.width(), self.image_label.height())
        self.image_label.setPixmap(_pixmap(crisp(image_to_qimage(image), max(1, side // 28))))
        colour = RIGHT if predicted == true_class else WRONG
        verdict = "right" if predicted == true_class else "wrong"
        self.title.setText(
            f"Test image #{index}: predicted <b style='color:{colour.name()}'>"
            f"{CLASS_NAMES[predicted]}</b> ({self.probabilities[predicted]:.1%}), "
            f"true <b>{CLASS_NAMES[true_class]}</b> ({verdict})"
        )
        neutral = self.palette().color(QPalette.ColorRole.Mid)
        brushes = [
            RIGHT if c == true_class else WRONG if c == predicted else neutral for c in range(10)
        ]
        self.bars.setOpts(width=self.probabilities, brushes=brushes, pens=[None] * 10)
        text = self.palette().color(QPalette.ColorRole.Text)
        for c, (item, p) in enumerate(zip(self.values, self.probabilities, strict=True)):
            # Past 80% the label goes inside the bar's left end, so it is never cut off.
            item.setText(f"{p:.1%}" if p >= 0.001 else "")
            item.setColor(text if p < 0.8 else text_color_on(brushes[c]))
            item.setPos(p + 0.01 if p < 0.8 else 0.01, c)

    def clear(self) -> None:
        self.index = None
        self.probabilities = []
        self.image_label.clear()
        self.title.setText("Click an image to see its class probabilities.")
        self.bars.setOpts(width=[0] * 10)
        for item in self.values:
            item.setText("")

    def _apply_palette(self) -> None:
        palette = self.palette()
        self.plot.setBackground(palette.color(QPalette.ColorRole.Base))
        text = palette.color(QPalette.ColorRole.Text)
        for axis in ("left", "bottom"):
            self.plot.getAxis(axis).setPen(text)
            self.plot.getAxis(axis).setTextPen(text)

    def changeEvent(self, event) -> None:  # noqa: N802
        if event.type() == event.Type.PaletteChange:
            self._apply_palette()
        super().changeEvent(event)


def _pixmap(image: QImage):
    from PySide6.QtGui import QPixmap

    return QPixmap.fromImage(image)


# ----- the gallery ---------------------------------------------------------------------------
class PredictionsView(QWidget):
    """A 6x6 gallery of test images with filters, sort order and a detail pane.

    Feed it with ``set_model(model, split)`` (runs the model over the split) or
    ``set_predictions(predictions, images)``; drill down with ``set_filter``.
    ``refresh_requested`` is emitted by the Refresh button so the owner can
    hand in a fresh model; without an owner the button re-runs the last model.
    """

    refresh_requested = Signal()
    image_activated = Signal(int)
    message = Signal(str)  # what a save did, for the status bar

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.predictions: Predictions | None = None
        self.images: torch.Tensor | None = None
        self._model: torch.nn.Module | None = None
        self._split: Split | None = None
        self._filter = GalleryFilter()
        self._seed = 0
        self._shown: list[int] = []
        self.page = 0  # which page of the matching images the grid shows

        self.true_combo = QComboBox()
        self.predicted_combo = QComboBox()
        for combo in (self.true_combo, self.predicted_combo):
            combo.addItem("any class", None)
            for c, name in enumerate(CLASS_NAMES):
                combo.addItem(name, c)
            combo.currentIndexChanged.connect(self._filter_from_controls)
        self.wrong_only = QCheckBox("Misclassified only")
        self.wrong_only.toggled.connect(self._filter_from_controls)
        self.sort_combo = QComboBox()
        self.sort_combo.addItem("Hardest first", "hardest")
        self.sort_combo.addItem("Random", "random")
        self.sort_combo.currentIndexChanged.connect(lambda _: self.set_page(0))
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip(
            "Run the current model over the test set again (and draw a new random sample)"
        )
        self.refresh_button.clicked.connect(self._on_refresh)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.sheet_button = QPushButton("Save contact sheet\u2026")
        self.sheet_button.setToolTip("Save the images shown here, captioned, as one PNG")
        self.sheet_button.clicked.connect(self.save_contact_sheet_dialog)
        self.previous_button = QPushButton("\u25c0")
        self.previous_button.setToolTip("The previous page of matching images")
        self.previous_button.clicked.connect(lambda: self.set_page(self.page - 1))
        self.next_button = QPushButton("\u25b6")
        self.next_button.setToolTip("The next page of matching images")
        self.next_button.clicked.connect(lambda: self.set_page(self.page + 1))

        # Two rows: one would set the tab's minimum width beyond a 1024-pixel window.
        controls = QVBoxLayout()
        filters, order = QHBoxLayout(), QHBoxLayout()
        for widget in (
            QLabel("True:"),
            self.true_combo,
            QLabel("Predicted:"),
            self.predicted_combo,
        ):
            filters.addWidget(widget)
        filters.addStretch(1)
        for control in (self.wrong_only, QLabel("Sort:"), self.sort_combo):
            order.addWidget(control)
        order.addStretch(1)
        order.addWidget(self.refresh_button)
        controls.addLayout(filters)
        controls.addLayout(order)

        self.tiles: list[ImageTile] = []
        grid_widget = QWidget()
        grid = QGridLayout(grid_widget)
        grid.setSpacing(4)
        grid.setContentsMargins(0, 0, 0, 0)
        for i in range(GRID_ROWS * GRID_COLUMNS):
            tile = ImageTile()
            tile.clicked.connect(self.show_detail)
            self.tiles.append(tile)
            grid.addWidget(tile, i // GRID_COLUMNS, i % GRID_COLUMNS)
        self.empty_label = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        grid.addWidget(self.empty_label, 0, 0, GRID_ROWS, GRID_COLUMNS)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addLayout(controls)
        caption_row = QHBoxLayout()
        caption_row.addWidget(self.caption, 1)
        caption_row.addWidget(self.previous_button)
        caption_row.addWidget(self.next_button)
        caption_row.addWidget(self.sheet_button)
        left_layout.addLayout(caption_row)
        # The grid scrolls in a short window rather than setting the window's minimum height.
        self.gallery_scroll = QScrollArea()
        self.gallery_scroll.setWidget(grid_widget)
        self.gallery_scroll.setWidgetResizable(True)
        self.gallery_scroll.setFrameShape(QFrame.Shape.NoFrame)
        left_layout.addWidget(self.gallery_scroll, 1)
        self.detail = ImageDetail()
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(self.detail)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([760, 480])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        self.detail.clear()
        self.update_gallery()

    # ----- feeding -----------------------------------------------------------------------
    def set_model(self, model: torch.nn.Module, split: Split) -> Predictions:
        """Predict every image of ``split`` with ``model`` and show the result."""
        self._model, self._split = model, split
        predictions = insight.predict(model, split)
        self.set_predictions(predictions, split.images)
        return predictions

    def set_predictions(self, predictions: Predictions, images: torch.Tensor) -> None:
        if len(predictions) != len(images):
            raise ValueError(f"{len(predictions)} predictions for {len(images)} images")
        self.predictions, self.images = predictions, images
        self.update_gallery()
        if self.detail.index is not None and self.detail.index < len(images):
            self.show_detail(self.detail.index)

    # ----- filter and sort -----------------------------------------------------------------
    def gallery_filter(self) -> GalleryFilter:
        return self._filter

    def set_filter(self, gallery_filter: GalleryFilter, sort: str | None = None) -> None:
        """Show ``gallery_filter``'s images (the controls follow); ``sort`` optionally too."""
        for combo, value in (
            (self.true_combo, gallery_filter.true_class),
            (self.predicted_combo, gallery_filter.predicted_class),
        ):
            combo.blockSignals(True)
            combo.setCurrentIndex(combo.findData(value) if value is not None else 0)
            combo.blockSignals(False)
        self.wrong_only.blockSignals(True)
        self.wrong_only.setChecked(gallery_filter.misclassified)
        self.wrong_only.blockSignals(False)
        if sort is not None:
            self.sort_combo.blockSignals(True)
            self.sort_combo.setCurrentIndex(self.sort_combo.findData(sort))
            self.sort_combo.blockSignals(False)
        self._filter = gallery_filter
        self.page = 0
        self.update_gallery()

    def sort_order(self) -> SortKind:
        return self.sort_combo.currentData()

    def _filter_from_controls(self, *_) -> None:
        self._filter = GalleryFilter(
            self.true_combo.currentData(),
            self.predicted_combo.currentData(),
            self.wrong_only.isChecked(),
        )
        self.page = 0
        self.update_gallery()

    def _on_refresh(self) -> None:
        self._seed += 1  # a new random sample each time
        if self.isSignalConnected(QMetaMethod.fromSignal(self.refresh_requested)):
            self.refresh_requested.emit()
        elif self._model is not None and self._split is not None:
            self.set_model(self._model, self._split)
        else:
            self.update_gallery()

    # ----- drawing -------------------------------------------------------------------------
    def page_count(self) -> int:
        """Pages of matching images (at least one, even when nothing matches)."""
        if self.predictions is None:
            return 1
        return max(1, math.ceil(insight.count(self.predictions, self._filter) / len(self.tiles)))

    def set_page(self, page: int) -> None:
        """Show page ``page`` (from 0) of the matching images, clamped to those there are."""
        self.page = min(max(page, 0), self.page_count() - 1)
        self.update_gallery()

    def shown_indices(self) -> list[int]:
        """Test-set indices in the gallery, in reading order."""
        return list(self._shown)

    def update_gallery(self) -> None:
        predictions = self.predictions
        if predictions is None or self.images is None:
            self._shown = []
            for tile in self.tiles:
                tile.show_image(None)
            self.caption.setText("")
            self.empty_label.setText(
                "No predictions yet: train a model (or load a checkpoint)"
                " and the test images appear here."
            )
            self.empty_label.show()
            self.sheet_button.setEnabled(False)
            self.previous_button.setEnabled(False)
            self.next_button.setEnabled(False)
            return
        per_page = len(self.tiles)
        self.page = min(self.page, self.page_count() - 1)
        first = self.page * per_page
        self._shown = insight.select(
            predictions,
            self._filter,
            self.sort_order(),
            limit=first + per_page,
            seed=self._seed,
        )[first:]
        predicted = predictions.predicted
        probabilities = predictions.probabilities
        for tile, index in zip(self.tiles, self._shown + [None] * len(self.tiles), strict=False):
            if index is None:
                tile.show_image(None)
                continue
            p = int(predicted[index])
            tile.show_image(
                index,
                self.images[index],
                int(predictions.labels[index]),
                p,
                float(probabilities[index, p]),
            )
            tile.selected = index == self.detail.index
        total = insight.count(predictions, self._filter)
        order = "hardest first" if self.sort_order() == "hardest" else "random sample"
        shown = f"{first + 1}\u2013{first + len(self._shown)}" if self._shown else "0"
        self.caption.setText(
            f"Showing {shown} of {total:,} ({self._filter.describe()}; {order}), "
            f"page {self.page + 1} of {self.page_count()}. "
            f"Test accuracy {predictions.accuracy:.1%}."
        )
        self.previous_button.setEnabled(self.page > 0)
        self.next_button.setEnabled(self.page + 1 < self.page_count())
        self.empty_label.setText("No test image matches this filter." if not self._shown else "")
        self.empty_label.setVisible(not self._shown)
        self.sheet_button.setEnabled(bool(self._shown))

    def show_detail(self, index: int) -> None:
        """Show test image ``index`` large, with its class probabilities."""
        if self.predictions is None or self.images is None:
            return
        self.detail.show_image(
            index,
            self.images[index],
            self.predictions.probabilities[index],
            int(self.predictions.labels[index]),
        )
        for tile in self.tiles:
            tile.selected = tile.index == index
            tile.update()
        self.image_activated.emit(index)

    def tile_for(self, index: int) -> ImageTile | None:
        return next((t for t in self.tiles if t.index == index), None)

    # ----- export ------------------------------------------------------------------------
    def contact_sheet(self, scale: int = 3) -> QImage:
        """The current gallery as one image: each picture crisp, captioned, wrong ones framed."""
        images = self.images
        cell_w, text_h = 28 * scale + 16, 34
        cell_h = 28 * scale + 12 + text_h
        header = 28
        rows = max(1, math.ceil(len(self._shown) / GRID_COLUMNS))
        sheet = QImage(cell_w * GRID_COLUMNS, header + cell_h * rows, QImage.Format.Format_RGB32)
        sheet.fill(QColor("white"))
        painter = QPainter(sheet)
        painter.setPen(QColor("black"))
        painter.drawText(
            QRect(6, 0, sheet.width() - 12, header),
            Qt.AlignmentFlag.AlignVCenter,
            self.caption.text(),
        )
        font = painter.font()
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.85))
        painter.setFont(font)
        for n, index in enumerate(self._shown):
            tile = self.tile_for(index)
            x, y = (n % GRID_COLUMNS) * cell_w, header + (n // GRID_COLUMNS) * cell_h
            assert images is not None  # a gallery is shown only with its images
            image = crisp(image_to_qimage(images[index]), scale)
            origin = QPoint(x + 8, y + 6)
            painter.drawImage(origin, image)
            if tile is not None and not tile.correct:
                painter.setPen(QPen(WRONG, 3))
                painter.drawRect(QRect(origin, image.size()).adjusted(-2, -2, 1, 1))
            first, second = tile.caption() if tile is not None else ("", "")
            painter.setPen(WRONG if tile is not None and not tile.correct else QColor("black"))
            text = QRect(x, y + 8 + image.height(), cell_w, text_h // 2)
            painter.drawText(text, Qt.AlignmentFlag.AlignHCenter, first)
            painter.setPen(QColor("#555555"))
            painter.drawText(text.translated(0, text_h // 2), Qt.AlignmentFlag.AlignHCenter, second)
        painter.end()
        return sheet

    def save_contact_sheet_dialog(self) -> None:
        """Ask for a file name (the dialog is looked up here, so tests can patch it) and save."""
        path, _ = QFileDialog.getSaveFileName(
            self, "Save contact sheet", "predictions.png", "PNG image (*.png)"
        )
        if not path:
            return
        if not path.lower().endswith(".png"):
            path += ".png"
        try:
            self.save_contact_sheet(path)
        except OSError as exc:
            QMessageBox.warning(self, "Could not save the contact sheet", str(exc))
            return
        self.message.emit(f"Saved the contact sheet to {path}")

    def save_contact_sheet(self, path: str) -> None:
        """Write the contact sheet as PNG; raises ``OSError`` naming the path on failure."""
        # PySide6's stubs say bytes, its runtime wants str for the format.
        if not self.contact_sheet().save(str(path), "PNG"):  # type: ignore[call-overload]
            raise OSError(f"could not write {path}; check the folder exists and is writable")


# ----- the confusion matrix ----------------------------------------------------------------
class ConfusionView(QWidget):
    """A 10x10 heatmap of counts (rows true, columns predicted) plus per-class accuracy.

    Diagonal cells shade towards green, off-diagonal ones towards red, both by
    the share of the row, starting from the palette's base colour: empty cells
    stay quiet and mistakes stand out. Clicking a cell emits ``cell_activated``.
    """

    cell_activated = Signal(int, int)  # true class, predicted class

    MARGIN = 8

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.matrix: torch.Tensor | None = None
        self.accuracy: list[float | None] = []
        self.caption = ""
        self.selected: tuple[int, int] | None = None
        self.setMouseTracking(True)
        self.setMinimumSize(520, 380)

    def set_predictions(self, predictions: Predictions, caption: str = "") -> None:
        self.set_matrix(insight.confusion_matrix(predictions), caption)

    def set_matrix(self, matrix: torch.Tensor, caption: str = "") -> None:
        self.matrix = matrix.to(torch.int64).cpu()
        self.accuracy = insight.per_class_accuracy(self.matrix)
        total = int(self.matrix.sum())
        correct = int(self.matrix.trace())
        summary = f"{total:,} test images, {correct / total:.1%} right" if total else ""
        self.caption = " \u00b7 ".join(p for p in (caption, summary) if p)
        self.update()

    # ----- geometry (tests click on these) -------------------------------------------------
    def _metrics(self) -> tuple[int, int, int, int, int]:
        """(left, top, cell width, cell height, accuracy column width)."""
        fm = self.fontMetrics()
        label_w = max(fm.horizontalAdvance(n) for n in CLASS_NAMES) + 12
        title_h = fm.height() * 3 + 8
        header_h = label_w  # column names are drawn vertically
        acc_w = fm.horizontalAdvance("100.0%") + 16
        avail_w = self.width() - 2 * self.MARGIN - fm.height() - label_w - acc_w - 8
        avail_h = self.height() - 2 * self.MARGIN - title_h - header_h - fm.height()
        cell = max(16, min(avail_w // 10, avail_h // 10))
        left = self.MARGIN + fm.height() + label_w + max(0, (avail_w - 10 * cell) // 2)
        top = self.MARGIN + title_h + header_h
        return left, top, cell, cell, acc_w

    def cell_rect(self, true_class: int, predicted_class: int) -> QRect:
        left, top, w, h, _ = self._metrics()
        return QRect(left + predicted_class * w, top + true_class * h, w, h)

    def cell_at(self, pos: QPoint) -> tuple[int, int] | None:
        left, top, w, h, _ = self._metrics()
        column, row = (pos.x() - left) // w, (pos.y() - top) // h
        if 0 <= row < 10 and 0 <= column < 10 and pos.x() >= left and pos.y() >= top:
            return int(row), int(column)
        return None

    # ----- drawing -------------------------------------------------------------------------
    def cell_color(self, true_class: int, predicted_class: int) -> QColor:
        base = self.palette().color(QPalette.ColorRole.Base)
        if self.matrix is None:
            return base
        count = int(self.matrix[true_class, predicted_class])
        row = int(self.matrix[true_class].sum())
        if not count or not row:
            return base
        target = RIGHT if true_class == predicted_class else WRONG
        # sqrt: a 2% confusion is still visible next to a 90% diagonal.
        return mix(base, target, 0.15 + 0.85 * math.sqrt(count / row))

    def paintEvent(self, event) -> None:  # noqa: N802
        painter = QPainter(self)
        palette = self.palette()
        text = palette.color(QPalette.ColorRole.WindowText)
        fm = painter.fontMetrics()
        left, top, w, h, acc_w = self._metrics()
        painter.setPen(text)
        title = (
            "Confusion matrix: rows are the true class, columns the predicted class. "
            "Click a cell to see its images."
        )
        painter.drawText(
            QRect(self.MARGIN, self.MARGIN, self.width() - 2 * self.MARGIN, fm.height()),
            Qt.AlignmentFlag.AlignLeft,
            fm.elidedText(title, Qt.TextElideMode.ElideRight, self.width() - 2 * self.MARGIN),
        )
        painter.drawText(
            QRect(
                self.MARGIN,
                self.MARGIN + fm.height() + 2,
                self.width() - 2 * self.MARGIN,
                fm.height(),
            ),
            Qt.AlignmentFlag.AlignLeft,
            self.caption or "No predictions yet: train a model first.",
        )
        # Axis titles.
        bold = QFont(painter.font())
        bold.setBold(True)
        painter.setFont(bold)
        painter.drawText(
            QRect(left, self.MARGIN + 2 * fm.height() + 6, 10 * w, fm.height()),
            Qt.AlignmentFlag.AlignHCenter,
            "predicted \u2192",
        )
        painter.save()
        label_w = max(fm.horizontalAdvance(n) for n in CLASS_NAMES) + 12
        painter.translate(max(self.MARGIN, left - label_w - fm.height() - 4), top + 5 * h)
        painter.rotate(-90)
        painter.drawText(
            QRect(-5 * h, 0, 10 * h, fm.height()), Qt.AlignmentFlag.AlignHCenter, "\u2190 true"
        )
        painter.restore()
        painter.drawText(
            QRect(left + 10 * w + 8, top - fm.height() - 4, acc_w, fm.height()),
            Qt.AlignmentFlag.AlignLeft,
            "accuracy",
        )
        painter.setFont(QFont(self.font()))
        # Class names: rows on the left, columns vertical on top.
        for c, name in enumerate(CLASS_NAMES):
            painter.setPen(text)
            painter.drawText(
                QRect(left - label_w - 6, top + c * h, label_w, h),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                name,
            )
            painter.save()
            painter.translate(left + c * w + w // 2 + fm.ascent() // 2 - 2, top - 6)
            painter.rotate(-90)
            painter.drawText(0, 0, name)
            painter.restore()
        # Cells.
        for t in range(10):
            for p in range(10):
                rect = self.cell_rect(t, p)
                fill = self.cell_color(t, p)
                painter.fillRect(rect, fill)
                painter.setPen(palette.color(QPalette.ColorRole.Mid))
                painter.drawRect(rect.adjusted(0, 0, -1, -1))
                if self.matrix is not None:
                    count = int(self.matrix[t, p])
                    painter.setPen(
                        text_color_on(fill)
                        if count
                        else palette.color(QPalette.ColorRole.PlaceholderText)
                    )
                    painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, f"{count}")
        # Per-class accuracy column: a small bar per row, text in the window's colour.
        for t, value in enumerate(self.accuracy or [None] * 10):
            rect = QRect(left + 10 * w + 8, top + t * h + 3, acc_w - 8, h - 6)
            if value is not None:
                bar = QRect(rect.left(), rect.top(), round(rect.width() * value), rect.height())
                painter.fillRect(bar, mix(palette.color(QPalette.ColorRole.Base), RIGHT, 0.45))
            painter.setPen(text)
            painter.drawText(
                rect, Qt.AlignmentFlag.AlignCenter, "\u2013" if value is None else f"{value:.1%}"
            )
        if self.selected is not None:
            painter.setPen(QPen(palette.color(QPalette.ColorRole.Highlight), 3))
            painter.drawRect(self.cell_rect(*self.selected).adjusted(1, 1, -2, -2))
        painter.end()

    # ----- interaction ---------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        cell = self.cell_at(event.position().toPoint())
        if cell is not None and event.button() == Qt.MouseButton.LeftButton:
            self.activate_cell(*cell)
        super().mousePressEvent(event)

    def activate_cell(self, true_class: int, predicted_class: int) -> None:
        self.selected = (true_class, predicted_class)
        self.update()
        self.cell_activated.emit(true_class, predicted_class)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        cell = self.cell_at(event.position().toPoint())
        if cell is None or self.matrix is None:
            QToolTip.hideText()
            return
        t, p = cell
        count, row = int(self.matrix[t, p]), int(self.matrix[t].sum())
        share = f" ({count / row:.1%} of {CLASS_NAMES[t]})" if row else ""
        QToolTip.showText(
            event.globalPosition().toPoint(),
            f"true {CLASS_NAMES[t]}, predicted {CLASS_NAMES[p]}: {count} images{share}",
            self,
        )

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(760, 640)


def connect_drilldown(confusion: ConfusionView, gallery: PredictionsView) -> None:
    """Clicking a matrix cell fills the gallery with that cell's images, hardest first."""
    confusion.cell_activated.connect(
        lambda t, p: gallery.set_filter(GalleryFilter.cell(t, p), sort="hardest")
    )
