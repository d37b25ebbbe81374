"""StripLegend: a legend row between a plot's title and its data that fits the plot."""

from __future__ import annotations

import pyqtgraph as pg
import pytest

from fmnist_gui.qt.widgets.plotting import StripLegend
from tests.support.qt_helpers import show_widget

NAMES = ["Training: Adam lr=0.001", "SGD lr=0.001", "Adam lr=0.001", "RMSProp lr=0.001"]


@pytest.mark.parametrize("width", [200, 420, 900])
def test_the_legend_fits_its_plot_and_keeps_its_size(qtbot, width):
    # Four long names in a plot too narrow for one row: the Compare tab after a race.
    widget = pg.PlotWidget()
    item = widget.getPlotItem()
    item.setTitle("Training loss")
    legend = StripLegend(item)
    for i, name in enumerate(NAMES):
        item.plot([0, 1, 2], [3 - i, 2 - i, 1], name=name)
    show_widget(qtbot, widget, width, 360)
    qtbot.wait(200)  # layouts settle
    sizes = []
    for _ in range(5):
        qtbot.wait(50)
        sizes.append((legend.width(), item.width()))
    # The legend's size settles: it does not grow with every layout pass.
    assert len(set(sizes)) == 1, sizes
    legend_width, item_width = sizes[-1]
    # Nothing is wider than the window: not the plot, not its legend, not its title.
    assert item_width <= width
    assert legend_width <= item_width
    assert item.titleLabel.geometry().right() <= width
    # Every entry is there, whole in names(); on screen shortened only where it must be.
    assert legend.names() == NAMES
    shown = [label.text for _, label in legend.items]
    if width >= 420:
        assert shown == NAMES
    else:
        assert shown[0] != NAMES[0]
        assert shown[0].endswith("…")
        assert NAMES[0].startswith(shown[0][:-1])
        assert legend.items[0][1].toolTip() == NAMES[0]  # the whole name on hover
    # The data area keeps a good part of the height.
    assert item.getViewBox().height() > 0.3 * widget.height()
