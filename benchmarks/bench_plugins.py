"""Plugin discovery plus self-test, with and without the optimizer zoo, against importing torch.

    python benchmarks/bench_plugins.py [--rounds 3]

Every sample is a fresh interpreter (what a user's start-up pays), and each
round runs every variant once, in a rotating order, so a noisy machine hurts
them alike. The figures are medians over the rounds:

* ``import torch``: the floor every start pays before any plugin matters;
  and ``import torch._dynamo`` after it, which torch.optim's first ``step()``
  does, so the first self-test pays it for every plugin;
* ``built-ins`` / ``+ zoo``: ``get_plugin_manager(probe=True, selftest_cache=True)``
  as the app calls it (entry points found, new ones tried in a child process,
  imported, every spec self-tested or its cached result reused) without and with
  ``fmnist-optimizer-zoo``,
  timed inside the child after torch is imported, and the child's whole wall
  time (interpreter start to ready);
* ``cold`` / ``warm``: a new, empty user data folder (``FMNIST_GUI_HOME``)
  per sample, or one that a run before the timed rounds has filled (the
  probe's verdicts and the self-test cache, as the app keeps them); the report
  lists the files the priming run left.

The zoo is made discoverable without installing it: a ``*.dist-info`` with
its entry point is written to a temporary folder that goes on the child's
``PYTHONPATH`` with the package's source (as ``tests/support/plugin_fixtures``
does for the plugin tests).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support
from tests.support.plugin_fixtures import make_distribution  # noqa: E402

ZOO_SOURCE = ROOT / "plugins" / "fmnist-optimizer-zoo"

# Runs in the child: import torch, then discover, import and self-test every plugin.
CHILD = r"""
import json, sys, time
started = time.perf_counter()
import torch
torch_s = time.perf_counter() - started
from fmnist_gui.plugins import selftest
calls = [0]
for name in ("check_optimizer", "check_loss"):
    real = getattr(selftest, name)
    def counted(*a, _real=real, **k):
        calls[0] += 1
        return _real(*a, **k)
    setattr(selftest, name, counted)
hook = [0.0]
try:  # time the zoo's hook (import pytorch_optimizer, derive the specs) when present
    import fmnist_optimizer_zoo as zoo
except ImportError:
    zoo = None
else:
    derive = zoo.optimizer_specs
    def timed():
        t = time.perf_counter()
        try:
            return derive()
        finally:
            hook[0] += time.perf_counter() - t
    zoo.optimizer_specs = timed
from fmnist_gui.plugins.host import get_plugin_manager
t = time.perf_counter()
# As the app and fmnist-train load them: new third-party plugins tried in a child
# process first, self-test results reused from the cache when unchanged.
host = get_plugin_manager([], probe=True, selftest_cache=True)
ready_s = time.perf_counter() - t
records = host.records.values()
print(json.dumps({
    "torch_s": torch_s,
    "ready_s": ready_s,
    "hook_s": hook[0],
    "selftests_run": calls[0],
    "selftest_s": sum(sum(r.selftest_seconds.values()) for r in records),
    "optimizers": len(host.optimizers),
    "rejected": sum(len(r.rejected) for r in records),
    "plugins": sorted(r.name for r in records),
}))
"""
# torch.optim's first step() imports torch._dynamo (see torch/optim/optimizer.py,
# _use_grad_for_differentiable): a cost the first self-test pays for everyone.
TORCH_ONLY = r"""
import time
t = time.perf_counter()
import torch
t1 = time.perf_counter()
import torch._dynamo
print(t1 - t, time.perf_counter() - t1)
"""


def child_env(home: Path, zoo_site: Path | None) -> dict[str, str]:
    paths = [str(ROOT), str(ROOT / "plugins")]
    if zoo_site is not None:
        paths += [str(zoo_site), str(ZOO_SOURCE)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        PYTHONPATH=os.pathsep.join(paths),
        FMNIST_GUI_HOME=str(home / "data"),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_CACHE_HOME=str(home / "cache"),
    )
    return env


def run_child(code: str, env: dict[str, str]) -> tuple[float, str]:
    """(wall seconds of the whole child, its stdout)."""
    import time

    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"child failed:\n{result.stderr}")
    return wall, result.stdout.strip().splitlines()[-1]


# Report columns: the child's key -> its heading.
COLUMNS = {
    "wall_s": "wall",
    "torch_s": "torch",
    "ready_s": "ready",
    "ready/torch": "ready/torch",
    "hook_s": "zoo hook",
    "selftests_run": "selftests",
    "selftest_s": "selftest s",
    "optimizers": "offered",
    "rejected": "refused",
}


def print_row(label: str, values: dict[str, float]) -> None:
    counts = ("selftests_run", "optimizers", "rejected")
    cells = [
        "-" if key not in values else f"{values[key]:.{0 if key in counts else 2}f}"
        for key in COLUMNS
    ]
    print(f"{label:<18}" + "".join(f"{c:>12}" for c in cells))


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-plugins-"))
    zoo_site = tmp / "zoo-site"
    make_distribution(
        zoo_site,
        "fmnist-optimizer-zoo",
        version="1.0.0",
        entry_points={"optimizer_zoo": "fmnist_optimizer_zoo"},
    )
    variants = {"built-ins": None, "+ zoo": zoo_site}
    warm_homes = {}
    cache_files = {}
    for name, site in variants.items():
        home = tmp / f"warm-{len(warm_homes)}"
        home.mkdir()
        run_child(CHILD, child_env(home, site))  # the priming run fills any cache
        warm_homes[name] = home
        cache_files[name] = files_under(home)

    samples: dict[str, list[dict]] = {}
    torch_walls: list[float] = []
    torch_imports: list[float] = []
    dynamo_imports: list[float] = []
    jobs = [("torch", None, None)] + [
        (f"{name} {state}", site, state)
        for name, site in variants.items()
        for state in ("cold", "warm")
    ]
    for r in range(args.rounds):
        order = jobs[r % len(jobs) :] + jobs[: r % len(jobs)]
        for label, site, state in order:
            if label == "torch":
                wall, out = run_child(TORCH_ONLY, child_env(tmp / "torch-home", None))
                torch_walls.append(wall)
                torch_imports.append(float(out.split()[0]))
                dynamo_imports.append(float(out.split()[1]))
                continue
            name = label.rsplit(" ", 1)[0]
            home = warm_homes[name] if state == "warm" else Path(tempfile.mkdtemp(dir=tmp))
            wall, out = run_child(CHILD, child_env(home, site))
            sample = json.loads(out)
            sample["wall_s"] = wall
            samples.setdefault(label, []).append(sample)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)

    import torch

    print(f"torch {torch.__version__}, python {sys.version.split()[0]}, {args.rounds} rounds")
    print(f"priming run left files in the user folders: {cache_files}")
    torch_import = statistics.median(torch_imports)
    print(f"{'variant':<18}" + "".join(f"{c:>12}" for c in COLUMNS.values()))
    print_row("import torch", {"wall_s": statistics.median(torch_walls), "torch_s": torch_import})
    print_row("+ torch._dynamo", {"torch_s": statistics.median(dynamo_imports)})
    for label, rows in samples.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "plugins"}
        med["ready/torch"] = med["ready_s"] / torch_import
        print_row(label, med)
    print(
        "wall: interpreter start to ready; torch: `import torch` in that child; ready: "
        "get_plugin_manager() after torch; zoo hook: the zoo's fmnist_register_optimizers "
        "(import pytorch_optimizer, derive 128 specs), part of ready; "
        "selftests: in-process self-test calls; "
        "selftest: their summed seconds as the host records them (seconds, medians)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
