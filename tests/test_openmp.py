"""fmnist_gui.openmp: the GUI thread hands back its idle OpenMP helpers before a worker trains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from fmnist_gui import openmp

# Run in a fresh interpreter with two OpenMP threads (the suite runs with one, so
# no helper thread would ever start) and count this process's threads in /proc.
SCRIPT = textwrap.dedent("""
    import json, os, time
    from fmnist_gui.openmp import release_thread_pool

    before_torch = release_thread_pool()  # torch (and so libgomp) not loaded yet
    import torch

    def tasks():
        return len(os.listdir("/proc/self/task"))

    torch.set_num_threads(2)
    start = tasks()
    x = torch.randn(512, 512)
    expected = x @ x  # a parallel region: libgomp starts one helper for this thread
    with_pool = tasks()
    released = release_thread_pool()
    deadline = time.monotonic() + 5
    while tasks() > start and time.monotonic() < deadline:
        time.sleep(0.01)  # the helper exits right after it is released
    after = tasks()
    again = x @ x  # a new pool, transparently
    print(json.dumps({"before_torch": before_torch, "start": start, "with_pool": with_pool,
                      "released": released, "after": after,
                      "same": bool(torch.equal(expected, again))}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="libgomp: Linux wheels")
def test_release_ends_the_calling_threads_helpers_and_torch_carries_on():
    env = dict(os.environ, OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["before_torch"] is False  # nothing to release, and torch not imported
    assert result["with_pool"] > result["start"], "no OpenMP helper thread was started"
    assert result["released"] is True
    assert result["after"] == result["start"]
    assert result["same"]


def test_without_torch_loaded_it_is_a_no_op(monkeypatch):
    monkeypatch.setattr(openmp, "_looked", False)
    monkeypatch.setattr(openmp, "_pause", None)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert openmp.release_thread_pool() is False
    assert openmp._looked is False  # it looks again once torch is there
