"""The GUI thread hands back its idle OpenMP helpers before a worker trains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from fmnist_gui.system import openmp

pytestmark = pytest.mark.skipif(
    not openmp.loaded_libgomps(), reason="this torch does not run on GNU OpenMP (libgomp)"
)


def run_script(body: str) -> dict:
    """Run ``body`` in a fresh interpreter with two OpenMP threads; its last line is JSON.

    The suite itself runs with one thread, with which no helper thread ever starts.
    """
    env = dict(os.environ, OMP_NUM_THREADS="2")
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(body)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_release_ends_the_calling_threads_helpers_and_torch_carries_on():
    result = run_script("""
        import json, os, time
        from fmnist_gui.system.openmp import release_thread_pool

        before_torch = release_thread_pool()  # torch (and so libgomp) not loaded yet
        import torch

        def tasks():
            return len(os.listdir("/proc/self/task"))

        torch.set_num_threads(2)
        start = tasks()
        x = torch.rand(1 << 20)
        expected = x * 3  # an elementwise op this big always runs a parallel region
        with_pool = tasks()
        released = release_thread_pool()
        deadline = time.monotonic() + 5
        while tasks() > start and time.monotonic() < deadline:
            time.sleep(0.01)  # the helper exits right after it is released
        after = tasks()
        again = x * 3  # a new pool, transparently
        print(json.dumps({"before_torch": before_torch, "start": start, "with_pool": with_pool,
                          "released": released, "after": after,
                          "same": bool(torch.equal(expected, again))}))
    """)
    assert result["before_torch"] is False  # nothing to release, and torch not imported
    assert result["with_pool"] > result["start"], "no OpenMP helper thread was started"
    assert result["released"] is True
    assert result["after"] == result["start"]
    assert result["same"]


def test_releasing_leaves_another_threads_parallel_work_alone():
    # The app releases the GUI thread's pool while the training thread is inside
    # parallel regions; libgomp frees only the caller's pool. Hammer that case.
    result = run_script("""
        import json, threading, torch
        from fmnist_gui.system.openmp import release_thread_pool

        torch.set_num_threads(2)
        x = torch.rand(1 << 18)
        expected = (x * 3).sum().item()
        wrong, done = [], threading.Event()

        def work():
            for _ in range(3000):
                if (x * 3).sum().item() != expected:
                    wrong.append(1)
            done.set()

        worker = threading.Thread(target=work)
        worker.start()
        released = 0
        while not done.is_set():
            x * 3  # the main thread's own pool, built again each time
            released += release_thread_pool()
        worker.join()
        print(json.dumps({"wrong": len(wrong), "released": released}))
    """)
    assert result["wrong"] == 0
    assert result["released"] > 10


def test_torch_comes_first_among_several_copies(monkeypatch, tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f01 r-xp 00000000 08:01 1 /opt/my env/sklearn.libs/libgomp-a34b3233.so.1.0.0\n"
        "7f02-7f03 r-xp 00000000 08:01 2 /site/torch/lib/libgomp.so.1 (deleted)\n"
        "7f06-7f07 rw-p 00000000 00:00 0\n"
    )
    real_open = open

    def fake_open(path, *args, **kwargs):
        return real_open(maps if path == "/proc/self/maps" else path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    assert openmp.loaded_libgomps() == [
        "/site/torch/lib/libgomp.so.1",
        "/opt/my env/sklearn.libs/libgomp-a34b3233.so.1.0.0",
    ]


def test_in_this_process_it_finds_torchs_copy_and_torch_carries_on():
    x = torch.rand(1 << 20)
    expected = x * 3
    assert any("/torch/" in path for path in openmp.loaded_libgomps())
    assert openmp.release_thread_pool() is True
    # The GUI thread releases on every frame, mostly with no pool left to free.
    assert openmp.release_thread_pool() is True
    assert torch.equal(x * 3, expected)
