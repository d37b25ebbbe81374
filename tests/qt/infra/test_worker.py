"""Worker threads report every failure, ``BaseException`` included, and always finish."""

from __future__ import annotations

import sys

import pytest

from fmnist_gui.qt.infra.worker import FunctionWorker, Job


def leave() -> None:
    sys.exit(3)


def interrupt() -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (leave, "SystemExit: 3 (it called sys.exit()"),
        (interrupt, "KeyboardInterrupt (raised by the plugin itself"),
    ],
)
def test_function_worker_reports_base_exceptions(qtbot, fn, expected):
    worker = FunctionWorker(fn)
    errors: list[str] = []
    returned: list[object] = []
    worker.errored.connect(lambda message, details: errors.append(message))
    worker.returned.connect(returned.append)
    job = Job(worker)
    with qtbot.waitSignal(job.done, timeout=10_000):
        job.start()
    assert returned == []
    assert len(errors) == 1
    assert errors[0].startswith(expected)
