"""Peak memory and time to refuse a zip bomb and a damaged checkpoint.

A checkpoint-shaped archive whose weight record is 3 GiB of zeros, deflated to a
few MB, is refused by ``fmnist_gui.checkpoint.read_checkpoint`` before any
record is inflated. Each load runs in a fresh process, so its peak RSS is its
own. Run: ``.venv/bin/python benchmarks/hostile_checkpoint.py [--gib 3]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch

LOAD = """
import resource, sys, time
from pathlib import Path
from fmnist_gui import checkpoint as ckpt
started = time.perf_counter()
try:
    ckpt.read_checkpoint(Path(sys.argv[1]))
    outcome = "loaded"
except ckpt.CheckpointError as exc:
    outcome = "refused: " + str(exc)[len(sys.argv[1]) + 2 :][:70]
seconds = time.perf_counter() - started
print(f"{seconds:.3f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} {outcome}")
"""


def make_bomb(path: Path, gib: float) -> None:
    good = path.with_name("good.pt")
    torch.save({"model": {"w": torch.zeros(512, 784)}}, good)
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename.endswith("data/0"):
                with zout.open(info.filename, "w", force_zip64=True) as record:
                    for _ in range(int(gib * 1024)):
                        record.write(chunk)
            else:
                zout.writestr(info.filename, zin.read(info))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=3.0, help="what the bomb expands to")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bomb = Path(tmp) / "bomb.pt"
        make_bomb(bomb, args.gib)
        print(f"bomb: {bomb.stat().st_size / 2**20:.1f} MiB on disk, {args.gib:g} GiB inflated")
        baseline = subprocess.run(
            [
                sys.executable,
                "-c",
                "import resource, torch, fmnist_gui.checkpoint;"
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        print(
            f"peak RSS of a process that only imports torch and the checkpoint code: "
            f"{float(baseline):.0f} MiB"
        )
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", LOAD, str(bomb)], capture_output=True, text=True, check=True
        ).stdout.split(maxsplit=2)
        print(f"read_checkpoint(bomb): {out[2].strip()}")
        print(
            f"  refusal took {float(out[0]) * 1000:.0f} ms, peak RSS {out[1]} MiB "
            f"(process wall time {time.perf_counter() - started:.1f} s)"
        )


if __name__ == "__main__":
    main()
