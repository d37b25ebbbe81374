"""Engine train epoch vs the tutorial's DataLoader + ToTensor loop, interleaved.

    python benchmarks/bench_epoch.py [--data-dir DIR] [--rounds 3]

Each round times one training epoch of each (same seed, same settings: SGD,
lr 1e-3, batch 64), alternating which goes first. Prints per-epoch seconds,
the median ratio tutorial/engine, and how close the engine gets to the GEMM
floor: the same matrix products alone, with no data handling or autograd.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support
from fmnist_gui.plugins.host import get_plugin_manager
from fmnist_gui.system.paths import default_data_root
from fmnist_gui.training.config import TrainConfig
from fmnist_gui.training.data import load_dataset
from fmnist_gui.training.events import EpochEnd
from fmnist_gui.training.trainer import Trainer
from tests.support import tutorial_reference as tut


def tutorial_epoch(root: Path, state) -> float:
    train_dl, _ = tut.make_loaders(str(root))
    model = tut.NeuralNetwork()
    model.load_state_dict(state)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    started = time.perf_counter()
    tut.train_loop(train_dl, model, nn.CrossEntropyLoss(), optimizer, print_fn=lambda _: None)
    return time.perf_counter() - started


def engine_epoch(data, plugins, state) -> float:
    trainer = Trainer(TrainConfig(epochs=1, seed=0), data, plugins, initial_state=state)
    # The engine times its own training loop, excluding the test pass.
    return next(e.train_seconds for e in trainer.run() if isinstance(e, EpochEnd))


def sentinel_cost(data, plugins, state, batches_per_epoch: int) -> tuple[float, float]:
    """(seconds per snapshot, seconds per batch of the per-batch check), on a real trainer."""
    trainer = Trainer(TrainConfig(epochs=1, seed=0), data, plugins, initial_state=state)
    run = trainer.run()
    for _ in range(60):  # past the first batches: SGD's state exists, the loss is smoothed
        next(run)
    sentinel = trainer.sentinel
    rounds = 50
    started = time.perf_counter()
    for _ in range(rounds):
        sentinel.take()
    per_snapshot = (time.perf_counter() - started) / rounds
    started = time.perf_counter()
    for _ in range(batches_per_epoch):
        sentinel.observe(0.5)
        trainer.global_step += 1  # never a multiple of `every` here: only the check is timed
        if trainer.global_step % sentinel.every == 0:
            trainer.global_step += 1
        sentinel.batch_done()
    per_batch = (time.perf_counter() - started) / batches_per_epoch
    run.close()
    return per_snapshot, per_batch


def gemm_floor(n_samples: int, batch_size: int = 64) -> float:
    """Seconds for one epoch's matrix products alone (forward and backward)."""
    sizes = [(784, 512), (512, 512), (512, 10)]
    weights = [torch.randn(o, i) for i, o in sizes]
    started = time.perf_counter()
    for first in range(0, n_samples, batch_size):
        b = min(batch_size, n_samples - first)
        x = torch.randn(b, 784) if first == 0 or b != batch_size else x  # noqa: F821
        acts = [x]
        for w in weights:
            acts.append(acts[-1] @ w.T)
        grad = torch.ones_like(acts[-1])
        for k in reversed(range(3)):
            _ = grad.T @ acts[k]  # weight gradient
            if k:
                grad = grad @ weights[k]  # input gradient
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=default_data_root())
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    data = load_dataset(args.data_dir)
    plugins = get_plugin_manager()
    torch.manual_seed(0)
    state = tut.NeuralNetwork().state_dict()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    tutorial_times, engine_times, floor_times = [], [], []
    for r in range(args.rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for which in order:
            if which == 0:
                tutorial_times.append(tutorial_epoch(args.data_dir, state))
            else:
                engine_times.append(engine_epoch(data, plugins, state))
        floor_times.append(gemm_floor(len(data.train)))
        print(
            f"round {r + 1}: tutorial {tutorial_times[-1]:.2f} s, engine "
            f"{engine_times[-1]:.2f} s, GEMM floor {floor_times[-1]:.2f} s",
            flush=True,
        )
    ratios = [t / e for t, e in zip(tutorial_times, engine_times, strict=True)]
    t, e, f = (statistics.median(x) for x in (tutorial_times, engine_times, floor_times))
    print(f"median epoch: tutorial {t:.2f} s, engine {e:.2f} s, GEMM floor {f:.2f} s")
    print(f"median speed-up (tutorial / engine, per round): {statistics.median(ratios):.2f}x")
    print(f"engine reaches {f / e:.0%} of the GEMM floor's speed")
    batches = -(-len(data.train) // 64)
    snap, check = sentinel_cost(data, plugins, state, batches)
    every = Trainer(TrainConfig(epochs=1, seed=0), data, plugins).sentinel.every
    per_epoch = batches // every * snap + batches * check
    print(
        f"divergence sentinel (on in the engine above): a snapshot every {every} batches "
        f"costs {snap * 1e3:.2f} ms, the per-batch check {check * 1e6:.1f} us; "
        f"{per_epoch * 1e3:.0f} ms an epoch, {per_epoch / e:.1%} of the engine's epoch"
    )


if __name__ == "__main__":
    main()
