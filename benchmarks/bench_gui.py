"""How much the desktop app costs on top of the headless engine.

Measures, in one process and interleaved (headless, GUI, headless, GUI, ...)
so that a noisy machine hurts both sides alike:

* one training epoch (train + test) by the headless engine, ``Trainer.run()``
  in a plain loop, versus the same epoch started from the window's Start
  action, trained by its ``TrainingWorker`` thread while the window draws.
  Two figures: the epoch as the engine times it (``EpochEnd.train_seconds +
  test_seconds``, measured in the thread that trains, so every slowdown the
  GUI causes is in it), and the whole 1-epoch run (headless: ``Trainer()``
  to the epoch's end; GUI: Start to idle, which adds the per-run costs:
  building the model, starting the thread, the autosave at the end);
* the same headless loop in a plain ``threading.Thread`` (a control: it
  shows what training outside the main thread costs by itself);
* the GUI thread's CPU time during each GUI run (``--profile`` writes a
  cProfile of it);
* event-loop latency while the GUI trains: a 5 ms ``QTimer`` heartbeat, the
  lateness of each tick (p50, p99, max);
* stop latency: from the Stop action to the worker's ``finished`` signal
  arriving in the GUI thread;
* time to visible: ``python -m fmnist_gui`` started in a subprocess until it
  reports that its window is shown (and whether torch was imported by then);
* time to ready (Start possible), cold (a fresh user data folder: plugin
  self-tests run and fill their cache) and warm (the cache is used), with the
  loader's phases (torch import, plugins, dataset) and the self-tests run;
* the first Start after Ready: from the Start action to the first batch's loss
  in the GUI thread, in a fresh app, right at Ready and once the background
  warm-up (torch.optim's one-off import) has finished.

``--startup-only`` measures only the start-up figures (a minute, not ten).

Run under a real display or Xvfb for realistic painting::

    xvfb-run -s "-screen 0 1280x800x24" .venv/bin/python benchmarks/bench_gui.py

``--train-limit N`` trains on the first N real training images to shorten a
run on a slow machine; the report says so.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def time_to_visible(repeats: int) -> list[tuple[float, float, bool]]:
    """(wall seconds from spawn to the report line, the app's own figure, torch imported)."""
    results = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(
                os.environ,
                FMNIST_GUI_REPORT_STARTUP="1",
                XDG_CONFIG_HOME=tmp,
                FMNIST_GUI_HOME=str(Path(tmp) / "home"),
            )
            started = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "fmnist_gui"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            try:
                line = proc.stdout.readline()
                wall = time.perf_counter() - started
            finally:
                proc.terminate()  # the process this function started, by its handle
                proc.wait(timeout=30)
        # "fmnist-gui: visible after 0.532 s (torch imported: False)"
        own = float(line.split("after")[1].split("s")[0]) if "after" in line else float("nan")
        results.append((wall, own, "torch imported: True" in line))
    return results


def launch_until_ready(home: Path, data_dir: Path) -> dict:
    """Start ``python -m fmnist_gui`` and read its start-up report; then end it."""
    env = dict(
        os.environ,
        FMNIST_GUI_REPORT_STARTUP="1",
        XDG_CONFIG_HOME=str(home / "config"),
        FMNIST_GUI_HOME=str(home / "home"),
    )
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fmnist_gui", "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    result: dict = {}
    try:
        for line in proc.stdout:
            if "visible after" in line:
                result["visible"] = float(line.split("after")[1].split("s")[0])
            elif "ready after" in line:
                # "fmnist-gui: ready after 2.9 s (phases: torch=1.8 plugins=0.1 dataset=0.6;
                # self-tests run: 0)"
                result["wall"] = time.perf_counter() - started
                result["ready"] = float(line.split("after")[1].split("s")[0])
                phases = line.split("phases:")[1].split(";")[0].split()
                result["phases"] = {k: float(v) for k, v in (p.split("=") for p in phases)}
                result["selftests"] = int(line.rsplit(":", 1)[1].strip(" )\n"))
                break
    finally:
        proc.terminate()  # the process this function started, by its handle
        proc.wait(timeout=30)
    return result


def time_to_ready(repeats: int, data_dir: Path) -> tuple[list[dict], list[dict]]:
    """Cold launches (each with a fresh user data folder) and warm ones (one shared folder)."""
    cold = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            cold.append(launch_until_ready(Path(tmp), data_dir))
    warm = []
    with tempfile.TemporaryDirectory() as tmp:
        launch_until_ready(Path(tmp), data_dir)  # fills the self-test cache
        for _ in range(repeats):
            warm.append(launch_until_ready(Path(tmp), data_dir))
    return cold, warm


FIRST_START = """
import sys, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
import fmnist_gui.qt.app as app_module

app = QApplication([sys.argv[0]])
wait_for_warm_up = sys.argv[1] == "after-warm-up"
real_build = app_module.build_app

def build(*args, **kwargs):
    fmnist = real_build(*args, **kwargs)
    def start():
        if fmnist.window.state != "idle" or (wait_for_warm_up and fmnist.warm_up_job):
            QTimer.singleShot(10, start)
            return
        pressed = time.perf_counter()
        def first(step, loss):
            print(f"first-batch {time.perf_counter() - pressed:.3f}", flush=True)
            fmnist.training.stop()
        fmnist.training.batch_loss.connect(first)
        fmnist.window.actions["start"].trigger()
    QTimer.singleShot(0, start)
    return fmnist

app_module.build_app = build
sys.exit(app_module.main(sys.argv[2:]))
"""


def first_start(data_dir: Path, when: str) -> float:
    """Seconds from Start to the first batch's loss in a fresh app (``when``: at ready or
    after the warm-up), with a warm self-test cache."""
    with tempfile.TemporaryDirectory() as tmp:
        launch_until_ready(Path(tmp), data_dir)  # fills the self-test cache
        env = dict(
            os.environ,
            XDG_CONFIG_HOME=str(Path(tmp) / "config"),
            FMNIST_GUI_HOME=str(Path(tmp) / "home"),
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", FIRST_START, when, "--data-dir", str(data_dir)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            for line in proc.stdout:
                if line.startswith("first-batch"):
                    return float(line.split()[1])
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return float("nan")


def compile_bytecode() -> None:
    """Write our modules' bytecode, as ``make run`` does before it launches the app.

    Without it, where PYTHONDONTWRITEBYTECODE is set, every launch compiles them.
    """
    import compileall

    import fmnist_gui

    root = Path(fmnist_gui.__file__).parent
    compileall.compile_dir(root, quiet=1)
    compileall.compile_dir(root.parent / "plugins" / "fmnist_builtins", quiet=1)


def report_startup(data_dir: Path, repeats: int) -> None:
    """Ready cold and warm, with phases, and the first Start."""
    compile_bytecode()
    load = os.getloadavg()
    cold, warm = time_to_ready(repeats, data_dir)
    at_ready = [first_start(data_dir, "at-ready") for _ in range(repeats)]
    warmed = [first_start(data_dir, "after-warm-up") for _ in range(repeats)]
    cpus = os.cpu_count()
    print(f"Load average before: {load[0]:.1f}, after: {os.getloadavg()[0]:.1f}; {cpus} CPUs")
    for name, runs in (("cold", cold), ("warm", warm)):
        runs = [r for r in runs if "ready" in r]
        if not runs:
            print(f"Ready {name}: no launch reported ready")
            continue
        phases = {k: statistics.median(r["phases"][k] for r in runs) for k in runs[0]["phases"]}
        ready = statistics.median(r["ready"] for r in runs)
        each = ", ".join(f"{r['ready']:.2f}" for r in runs)
        visible = statistics.median(r["visible"] for r in runs)
        print(
            f"Ready {name}, median of {len(runs)}: {ready:.2f} s after launch (each: {each}); "
            f"visible {visible:.2f} s; phases (median): "
            + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items())
            + f"; self-tests run: {', '.join(str(r['selftests']) for r in runs)}  (goal <= 3 s)"
        )
    print(
        f"First Start to first batch, median of {repeats}: right at Ready "
        f"{statistics.median(at_ready):.2f} s, after the background warm-up "
        f"{statistics.median(warmed):.2f} s"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=Path.home() / ".local/share/fmnist-gui/data")
    p.add_argument("--repeats", type=int, default=3, help="epochs measured on each side")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--train-limit",
        type=int,
        default=0,
        help="train on the first N training images (0: all 60,000)",
    )
    p.add_argument("--stops", type=int, default=5, help="stop-latency samples")
    p.add_argument("--visible-repeats", type=int, default=3)
    p.add_argument("--ready-repeats", type=int, default=5)
    p.add_argument(
        "--startup-only", action="store_true", help="only the start-up figures (ready, first Start)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch.set_num_threads(N) for every side (0: torch's default)",
    )
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="cProfile the GUI thread during the timed GUI epochs into this file",
    )
    args = p.parse_args()

    # Keep away from the user's settings, autosaves and plugins.
    home = tempfile.mkdtemp(prefix="bench-gui-")
    os.environ["FMNIST_GUI_HOME"] = str(Path(home) / "home")
    os.environ["XDG_CONFIG_HOME"] = str(Path(home) / "config")
    if args.startup_only:
        report_startup(args.data_dir, args.ready_repeats)
        return 0
    visible = time_to_visible(args.visible_repeats)

    import torch
    from PySide6.QtCore import QEventLoop, QSettings, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from fmnist_gui.plugins.host import get_plugin_manager
    from fmnist_gui.qt.app import build_app
    from fmnist_gui.system.openmp import release_thread_pool
    from fmnist_gui.training.config import TrainConfig
    from fmnist_gui.training.data import FashionMNISTData, Split, load_dataset
    from fmnist_gui.training.events import EpochEnd
    from fmnist_gui.training.trainer import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    app = QApplication.instance() or QApplication([])
    data = load_dataset(args.data_dir, allow_download=False)
    if args.train_limit:
        n = args.train_limit
        data = FashionMNISTData(Split(data.train.images[:n], data.train.labels[:n]), data.test)
    plugins = get_plugin_manager([])
    config = TrainConfig(epochs=1, batch_size=args.batch_size, seed=0)

    tmp = tempfile.mkdtemp()
    settings = QSettings(str(Path(tmp) / "bench.ini"), QSettings.Format.IniFormat)
    fmnist = build_app(args.data_dir, plugins=plugins, settings=settings)
    window, training = fmnist.window, fmnist.training
    window.resize(1280, 800)
    window.show()
    fmnist.start_loading()
    while window.state == "loading":
        app.processEvents()
        time.sleep(0.005)
    fmnist.backend.data = data  # the same (possibly limited) tensors as the headless side
    training.panel.seed_edit.setText("0")
    training.panel.batch_spin.setValue(args.batch_size)
    training.panel.epochs_spin.setValue(1)

    # Event-loop heartbeat: how late each 5 ms tick fires while training runs.
    lateness: list[float] = []
    beat = {"last": 0.0, "on": False}

    def tick() -> None:
        now = time.perf_counter()
        if beat["on"] and beat["last"]:
            lateness.append(max(0.0, now - beat["last"] - 0.005))
        beat["last"] = now

    heartbeat = QTimer()
    heartbeat.setTimerType(Qt.TimerType.PreciseTimer)
    heartbeat.setInterval(5)
    heartbeat.timeout.connect(tick)

    def pump_until(predicate, timeout: float = 3600.0) -> None:
        """Run the real event loop (blocking, as app.exec() does) until predicate() holds.

        A processEvents() polling loop would take the GIL a thousand times a second and
        slow the worker down: that would measure the benchmark, not the app.
        """
        if predicate():
            return
        loop = QEventLoop()

        def check(*_args) -> None:
            if predicate() or time.perf_counter() > deadline:
                loop.quit()

        deadline = time.perf_counter() + timeout
        checker = QTimer()
        checker.setInterval(100)
        checker.timeout.connect(check)
        window.state_changed.connect(check)
        checker.start()
        loop.exec()
        checker.stop()
        window.state_changed.disconnect(check)

    def headless_epoch() -> tuple[float, float]:
        """(wall seconds of a 1-epoch run, trainer built and run; the engine's epoch seconds)."""
        started = time.perf_counter()
        trainer = Trainer(config, data, plugins)
        for event in trainer.run():
            if isinstance(event, EpochEnd):
                return time.perf_counter() - started, event.train_seconds + event.test_seconds
        raise RuntimeError("the epoch did not end")

    def headless_epoch_in_thread() -> tuple[float, float]:
        # The same loop in a plain Python thread, started as the app starts its worker.
        result: list[tuple[float, float]] = []
        release_thread_pool()
        thread = threading.Thread(target=lambda: result.append(headless_epoch()))
        thread.start()
        thread.join()
        return result[0]

    def gui_epoch(with_heartbeat: bool = False) -> tuple[float, float]:
        """(wall seconds from Start to idle again; the engine's epoch seconds)."""
        training.trainer = None  # a fresh model, as Reset would give
        window.update_actions()
        if with_heartbeat:
            beat["last"], beat["on"] = 0.0, True
            heartbeat.start()
        ends: list = []
        training.epoch_finished.connect(ends.append)
        started, cpu = time.perf_counter(), time.thread_time()
        if profiler is not None and not with_heartbeat:
            profiler.enable()
        window.actions["start"].trigger()
        pump_until(lambda: window.state == "idle" and training.job is None)
        elapsed = time.perf_counter() - started
        if profiler is not None:
            profiler.disable()
        if not with_heartbeat:
            gui_cpu.append(time.thread_time() - cpu)
        training.epoch_finished.disconnect(ends.append)
        heartbeat.stop()
        beat["on"] = False
        return elapsed, ends[0].train_seconds + ends[0].test_seconds

    headless, threaded, gui, gui_cpu = [], [], [], []
    profiler = cProfile.Profile() if args.profile else None
    for i in range(args.repeats):
        headless.append(headless_epoch())
        threaded.append(headless_epoch_in_thread())
        gui.append(gui_epoch())
        print(
            f"  round {i + 1}: epoch (run) headless {headless[-1][1]:.2f} s "
            f"({headless[-1][0]:.2f} s), in a thread {threaded[-1][1]:.2f} s "
            f"({threaded[-1][0]:.2f} s), GUI {gui[-1][1]:.2f} s ({gui[-1][0]:.2f} s)",
            flush=True,
        )

    # The heartbeat wakes the GUI thread 200 times a second, which itself costs the
    # worker some GIL time: so it runs in an epoch of its own, not in the timed ones.
    heartbeat_epoch = gui_epoch(with_heartbeat=True)[0]

    # Stop latency: Stop pressed mid-epoch until the worker's finished reaches the GUI.
    stops = []
    training.panel.epochs_spin.setValue(100)
    for _ in range(args.stops):
        training.trainer = None
        window.update_actions()
        window.actions["start"].trigger()
        finished_at: dict[str, float] = {}
        training.worker.finished.connect(
            lambda _e, mark=finished_at: mark.setdefault("t", time.perf_counter())
        )
        pump_until(lambda: training.trainer.global_step >= 20)
        pressed = time.perf_counter()
        window.actions["stop"].trigger()
        pump_until(lambda mark=finished_at: "t" in mark and training.job is None)
        stops.append(finished_at["t"] - pressed)
    training.dirty = False
    window.close()
    if profiler is not None:
        profiler.dump_stats(args.profile)

    subset = f"first {args.train_limit:,} training images" if args.train_limit else "all 60,000"
    print()
    print(
        f"Data: real Fashion-MNIST in {args.data_dir} ({subset}; test set 10,000), "
        f"batch size {args.batch_size}, platform {app.platformName()}, "
        f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )

    def report(what: str, index: int, goal: str) -> None:
        h, t, g = ([r[index] for r in side] for side in (headless, threaded, gui))
        # Paired within each round (the three ran back to back): robust to drifting load.
        paired = [b / a for a, b in zip(h, g, strict=True)]
        print(
            f"{what}, median of {args.repeats}: headless {statistics.median(h):.2f} s, "
            f"in a thread {statistics.median(t):.2f} s, GUI {statistics.median(g):.2f} s"
        )
        print(
            f"  GUI/headless per round {', '.join(f'{r:.3f}' for r in paired)}; "
            f"median {statistics.median(paired):.3f}{goal}"
        )

    report(
        "Epoch as the engine times it (train + test, in the training thread)", 1, "  (goal <= 1.10)"
    )
    report(
        "Whole 1-epoch run: headless from Trainer() to the epoch's end, GUI from Start "
        "to idle (adds building the model, the thread, the autosave)",
        0,
        "",
    )
    print(
        f"CPU time of the GUI thread during those GUI runs: "
        f"{', '.join(f'{x:.2f}' for x in gui_cpu)} s"
    )
    print(
        f"Event-loop lateness while training ({len(lateness)} ticks of 5 ms): "
        f"p50 {1000 * percentile(lateness, 50):.1f} ms, p99 {1000 * percentile(lateness, 99):.1f}"
        f" ms, max {1000 * max(lateness, default=0):.1f} ms  (goal p99 <= 16 ms; that "
        f"epoch took {heartbeat_epoch:.2f} s)"
    )
    print(
        f"Stop latency, median of {len(stops)}: {1000 * statistics.median(stops):.1f} ms "
        f"(max {1000 * max(stops):.1f} ms; goal <= 100 ms)"
    )
    walls = [v[0] for v in visible]
    owns = [v[1] for v in visible]
    print(
        f"Time to visible (python -m fmnist_gui), median of {len(visible)}: "
        f"{statistics.median(walls):.3f} s from spawn, {statistics.median(owns):.3f} s by the "
        f"app's clock; torch imported before showing: {any(v[2] for v in visible)}  "
        "(goal < 1.0 s)"
    )
    report_startup(args.data_dir, args.ready_repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
