"""The tutorial's printed lines, shared by the CLI and the desktop app's log panel.

No Qt and no torch here: both front ends format engine events through
``format_event`` so that their logs are the same, character for character.
"""

from __future__ import annotations

from fmnist_gui.training.events import BatchEnd, EpochEnd, EpochStart, Event, RunEnd

DONE_LINE = "Done!"
# The tutorial prints a loss line every 100 batches.
LOSS_LINE_EVERY = 100


def format_event(event: Event) -> str | None:
    """The text the tutorial prints for an engine event, or ``None`` when it prints nothing.

    The text may span lines; it is what one ``print()`` call writes, minus the
    final newline.
    """
    if isinstance(event, BatchEnd):
        if event.batch % LOSS_LINE_EVERY != 0:
            return None
        return f"loss: {event.loss:>7f}  [{event.current:>5d}/{event.dataset_size:>5d}]"
    if isinstance(event, EpochStart):
        return f"Epoch {event.epoch}\n-------------------------------"
    if isinstance(event, EpochEnd):
        return (
            f"Test Error: \n Accuracy: {(100 * event.test_accuracy):>0.1f}%, "
            f"Avg loss: {event.test_loss:>8f} \n"
        )
    if isinstance(event, RunEnd) and event.status == "finished":
        return DONE_LINE
    return None
