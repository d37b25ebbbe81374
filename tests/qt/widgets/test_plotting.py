"""StripLegend: a legend row between a plot's title and its data that fits the plot."""

from __future__ import annotations

import pyqtgraph as pg
import pytest

from fmnist_gui.qt.widgets.plotting import StripLegend

NAMES = ["Training: Adam lr=0.001", "SGD lr=0.001", "Adam lr=0.001", "RMSProp lr=0.001"]


@pytest.mark.parametrize("width", [300, 420, 900])
def test_the_legend_fits_its_plot_and_keeps_its_size(qtbot, width):
    # Four long names in a plot too narrow for one row: the Compare tab after a race.
    widget = pg.PlotWidget()
    qtbot.addWidget(widget)
    item = widget.getPlotItem()
    item.setTitle("Training loss")
    legend = StripLegend(item)
    for i, name in enumerate(NAMES):
        item.plot([0, 1, 2], [3 - i, 2 - i, 1], name=name)
    widget.resize(width, 360)
    widget.show()
    qtbot.waitExposed(widget)
    qtbot.wait(200)  # layouts settle
    sizes = []
    for _ in range(5):
        qtbot.wait(50)
        sizes.append((legend.width(), item.width()))
    # The legend's size settles: it does not grow with every layout pass.
    assert len(set(sizes)) == 1, sizes
    legend_width, item_width = sizes[-1]
    assert item_width <= width
    assert legend_width <= item_width
    # Every entry is there, and the data area keeps most of the height.
    assert [label.text for _, label in legend.items] == NAMES
    assert item.getViewBox().height() > 0.4 * widget.height()
