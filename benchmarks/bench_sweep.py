"""Sweep throughput: `fmnist-sweep run` against a naive loop of `fmnist-train` calls, interleaved.

    python benchmarks/bench_sweep.py [--data-dir DIR] [--subset 10000] [--rounds 2]
                                     [--trials 6] [--epochs 2] [--jobs N] [--default-sweep]

Both sides train the same images: the first ``--subset`` training images (and
the whole test set) written once into a temporary data folder that both read.
Each round runs, in alternating order:

* naive: ``--trials`` sequential ``fmnist-train`` processes with torch's default
  threads, each at a learning rate drawn log-uniformly (seeded) from 1e-5..1,
  optimizers taken in turn from sgd, adam, rmsprop; every trial runs all epochs;
* sweep: one ``fmnist-sweep run`` with the same number of trials (split over the
  three optimizers), no seed runs, ``--jobs`` worker processes with the CPUs
  shared out as threads, the median pruner on;
* sweep without pruning (``--pruner none``): the same, to show what the worker
  processes alone bring.

Trials per hour count every trial begun (a pruned one is a trial the search
made); process start-up is inside every figure, as a user would wait for it.
``--default-sweep`` then times the default sweep (3 optimizers x 10 trials x 2
epochs, then 3 seeds each) once on the same data.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.conftest's IDX writer
from fmnist_gui.sweep.pool import cpu_count, default_jobs  # noqa: E402
from fmnist_gui.system.paths import default_data_root  # noqa: E402

OPTIMIZERS = ("sgd", "adam", "rmsprop")


def environment() -> dict[str, str]:
    env = dict(os.environ)
    # The naive loop keeps torch's default threads: no inherited OMP_NUM_THREADS.
    env.pop("OMP_NUM_THREADS", None)
    paths = [str(ROOT), str(ROOT / "plugins"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def write_subset(source: Path, target: Path, n: int) -> Path:
    """The first ``n`` training images and the whole test set, as IDX files under ``target``."""
    from fmnist_gui.training.data import load_dataset
    from tests.conftest import write_idx

    data = load_dataset(source, allow_download=False)
    raw = target / "FashionMNIST" / "raw"
    write_idx(raw / "train-images-idx3-ubyte", data.train.images[:n].numpy())
    write_idx(raw / "train-labels-idx1-ubyte", data.train.labels[:n].numpy())
    write_idx(raw / "t10k-images-idx3-ubyte", data.test.images.numpy())
    write_idx(raw / "t10k-labels-idx1-ubyte", data.test.labels.numpy())
    return target


def naive_loop(data_dir: Path, trials: int, epochs: int, rng: random.Random, env) -> dict:
    started = time.perf_counter()
    for i in range(trials):
        lr = math.exp(rng.uniform(math.log(1e-5), math.log(1.0)))
        command = [
            sys.executable, "-m", "fmnist_gui.cli", "--data-dir", str(data_dir),
            "--no-download", "--epochs", str(epochs), "--seed", "0",
            "--optimizer", OPTIMIZERS[i % 3], "--lr", f"{lr:.6g}",
        ]  # fmt: skip
        # A diverged run exits 1: still a trial the search made.
        subprocess.run(command, env=env, capture_output=True, check=False)
    return {"seconds": time.perf_counter() - started, "trials": trials, "epochs": trials * epochs}


def our_sweep(data_dir, work, name, trials, epochs, seeds, jobs, pruner, env) -> dict:
    storage = f"sqlite:///{work / (name + '.db')}"
    command = [
        sys.executable, "-m", "fmnist_gui.sweep.cli", "run", "--storage", storage,
        "--study", name, "--data-dir", str(data_dir), "--no-download",
        "--optimizers", ",".join(OPTIMIZERS), "--trials", str(trials), "--epochs", str(epochs),
        "--seeds", str(seeds), "--jobs", str(jobs), "--pruner", pruner,
    ]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"fmnist-sweep failed:\n{result.stderr}")
    saved = re.search(r"saved (\d+) of (\d+) tuning epochs", result.stdout)
    return {
        "seconds": seconds,
        "trials": trials * len(OPTIMIZERS),
        "epochs_saved": int(saved.group(1)),
        "epochs_budget": int(saved.group(2)),
        "table": result.stdout[result.stdout.index(f"sweep {name!r}:") :],
    }


def per_hour(runs: list[dict]) -> float:
    return 3600 * sum(r["trials"] for r in runs) / sum(r["seconds"] for r in runs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=default_data_root())
    p.add_argument("--subset", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--trials", type=int, default=6, help="per round, a multiple of 3")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--jobs", type=int, default=default_jobs())
    p.add_argument("--default-sweep", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()
    if args.trials % 3:
        p.error("--trials must be a multiple of 3 (one share per optimizer)")
    env = environment()
    rng = random.Random(0)
    print(f"{cpu_count()} CPUs; our sweep: {args.jobs} worker processes", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        work = Path(tmp)
        data_dir = write_subset(args.data_dir, work / "data", args.subset)
        print(f"data: first {args.subset} training images, 10000 test images", flush=True)
        naive, swept, unpruned = [], [], []
        for r in range(args.rounds):
            arms = [
                ("naive", lambda: naive.append(
                    naive_loop(data_dir, args.trials, args.epochs, rng, env))),
                ("sweep", lambda r=r: swept.append(our_sweep(
                    data_dir, work, f"r{r}", args.trials // 3, args.epochs, 0, args.jobs,
                    "median", env))),
                ("sweep, no pruning", lambda r=r: unpruned.append(our_sweep(
                    data_dir, work, f"u{r}", args.trials // 3, args.epochs, 0, args.jobs,
                    "none", env))),
            ]  # fmt: skip
            if r % 2:
                arms.reverse()
            for label, run in arms:
                run()
                last = {"naive": naive, "sweep": swept, "sweep, no pruning": unpruned}[label][-1]
                print(
                    f"round {r + 1}: {label}: {last['trials']} trials in {last['seconds']:.1f} s",
                    flush=True,
                )
        figures = {
            "naive_trials_per_hour": per_hour(naive),
            "sweep_trials_per_hour": per_hour(swept),
            "sweep_unpruned_trials_per_hour": per_hour(unpruned),
            "epochs_saved": sum(s["epochs_saved"] for s in swept),
            "epochs_budget": sum(s["epochs_budget"] for s in swept),
        }
        ratios = [n["seconds"] / s["seconds"] for n, s in zip(naive, swept, strict=True)]
        figures["median_round_speedup"] = statistics.median(ratios)
        print(
            f"trials per hour: naive {figures['naive_trials_per_hour']:.0f}, sweep "
            f"{figures['sweep_trials_per_hour']:.0f} "
            f"({figures['sweep_trials_per_hour'] / figures['naive_trials_per_hour']:.2f}x), "
            f"sweep without pruning {figures['sweep_unpruned_trials_per_hour']:.0f} "
            f"({figures['sweep_unpruned_trials_per_hour'] / figures['naive_trials_per_hour']:.2f}x)"
        )
        print(
            f"pruning saved {figures['epochs_saved']} of {figures['epochs_budget']} tuning "
            "epochs in the sweep rounds"
        )
        if args.default_sweep:
            result = our_sweep(data_dir, work, "default", 10, 2, 3, args.jobs, "median", env)
            figures["default_sweep_seconds"] = result["seconds"]
            print(
                f"default sweep (3 optimizers x 10 trials x 2 epochs, then 3 seeds) on "
                f"{args.subset} training images: {result['seconds']:.0f} s wall"
            )
            print(result["table"])
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
