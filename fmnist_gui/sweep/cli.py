"""``fmnist-sweep``: tune optimizers fairly with Optuna, then rerun the best with seeds.

    fmnist-sweep run [--optimizers sgd,adam,rmsprop] [--trials 10] [--epochs 2] [--seeds 3]
    fmnist-sweep worker --study NAME --storage URL     (on every other machine)
    fmnist-sweep report --study NAME [--out DIR]
    fmnist-sweep list

Bad input is one line on stderr and exit code 2, as with ``fmnist-train``.
The first Ctrl-C stops after the current batch and queues the interrupted trial
again; running the same command later continues the sweep.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import NoReturn, TextIO

from fmnist_gui import __version__
from fmnist_gui.sweep.pool import default_jobs, threads_per_worker
from fmnist_gui.sweep.space import Range, TuneRequest
from fmnist_gui.sweep.spec import DEFAULT_OPTIMIZERS, PRUNERS, SweepSpec
from fmnist_gui.sweep.storage import DEFAULT_GRACE, DEFAULT_HEARTBEAT
from fmnist_gui.system.options import add_data_options, add_plugin_dir_option
from fmnist_gui.system.paths import default_data_root

PROG = "fmnist-sweep"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_STUDY = "sweep"


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage dump
        raise UsageError(message)


# ----- arguments -------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = _ArgumentParser(
        prog=PROG,
        description="Tune optimizers on the tutorial's Fashion-MNIST network with Optuna, "
        "then retrain each one's best setting with several seeds.",
    )
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)
    commands.required = True

    run = commands.add_parser("run", help="make a sweep (or continue it) and work on it here")
    d = SweepSpec(spaces=())
    run.add_argument(
        "--optimizers",
        default=None,
        metavar="A,B",
        help=f"optimizer plugins to compare (default {','.join(DEFAULT_OPTIMIZERS)})",
    )
    run.add_argument("--trials", type=int, default=None, help=f"per optimizer, default {d.trials}")
    run.add_argument("--epochs", type=int, default=None, help=f"per trial, default {d.epochs}")
    run.add_argument(
        "--seeds",
        type=int,
        default=None,
        help=f"reruns of each optimizer's best setting, default {d.seeds}",
    )
    run.add_argument(
        "--tune",
        action="append",
        default=[],
        metavar="[OPT.]PARAM[=LOW:HIGH[:log]]",
        help="also tune a hyperparameter (lr always is, 1e-5..1 log); OPT. limits it to one "
        "optimizer, betas.1 picks one component; repeatable",
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="[OPT.]PARAM=VALUE",
        help="give an untuned hyperparameter a value other than its default; repeatable",
    )
    run.add_argument(
        "--batch-size", type=int, default=None, help=f"default {d.batch_size} (the tutorial's)"
    )
    run.add_argument(
        "--subset",
        type=int,
        default=None,
        metavar="N",
        help="train on the first N training images (default all; the test set is always whole)",
    )
    run.add_argument(
        "--shuffle",
        action="store_true",
        default=None,
        help="shuffle the training set each epoch (the tutorial does not)",
    )
    run.add_argument("--loss", default=None, metavar="NAME", help=f"default {d.loss}")
    run.add_argument(
        "--seed", type=int, default=None, help=f"sampler and tuning seed, default {d.seed}"
    )
    run.add_argument("--pruner", default=None, choices=PRUNERS, help=f"default {d.pruner}")
    run.add_argument(
        "--target",
        type=float,
        default=None,
        metavar="ACC",
        help=f"accuracy whose time to reach is reported, default {d.target_accuracy:g}",
    )
    _common(run, study_required=False)
    _working(run)

    worker = commands.add_parser("worker", help="join an existing sweep and work on it")
    _common(worker, study_required=True)
    _working(worker)
    worker.add_argument(
        "--id",
        default=None,
        metavar="NAME",
        help="this worker's name in the trials (default HOST-PID); unique per worker",
    )

    report = commands.add_parser("report", help="print the table; write CSV and PNG plots")
    _common(report, study_required=False)
    report.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="write trials.csv and plots here"
    )

    listing = commands.add_parser("list", help="the sweeps in a storage and how far they are")
    listing.add_argument("--storage", default=None, metavar="URL", help=_STORAGE_HELP)
    return p


_STORAGE_HELP = (
    "Optuna storage URL: sqlite:///FILE or postgresql://USER:PASSWORD@HOST/DB "
    "(default: sweeps.db in the user data folder)"
)


def _common(p: argparse.ArgumentParser, *, study_required: bool) -> None:
    p.add_argument("--storage", default=None, metavar="URL", help=_STORAGE_HELP)
    p.add_argument(
        "--study",
        required=study_required,
        default=None if study_required else DEFAULT_STUDY,
        metavar="NAME",
        help="the sweep's name" + ("" if study_required else f" (default {DEFAULT_STUDY})"),
    )


def _working(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help=f"worker processes here (default {default_jobs()}: the CPUs, at most 4)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch threads per worker (default: the CPUs shared out among the workers)",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    add_data_options(p)
    add_plugin_dir_option(p)
    p.add_argument(
        "--heartbeat",
        type=int,
        default=DEFAULT_HEARTBEAT,
        metavar="S",
        help=f"seconds between a running trial's liveness stamps (default {DEFAULT_HEARTBEAT})",
    )
    p.add_argument(
        "--grace",
        type=int,
        default=DEFAULT_GRACE,
        metavar="S",
        help="seconds without a stamp before a trial counts as dead and is retried "
        f"(default {DEFAULT_GRACE})",
    )


# ----- entry point -----------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv, sys.stdout)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; run the same command again to continue", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: list[str] | None, out: TextIO) -> int:
    args = build_parser().parse_args(argv)
    import optuna

    from fmnist_gui.errors import FmnistError

    # Our own lines say what happens; Optuna's INFO log would say it twice.
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    try:
        if args.command == "list":
            return _list(args, out)
        if args.command == "report":
            return _report(args, out)
        return _work(args, out)
    except FmnistError as exc:
        raise UsageError(str(exc)) from None


def _open_storage(args, *, create: bool = False):
    from fmnist_gui.sweep.storage import open_storage

    heartbeat = getattr(args, "heartbeat", DEFAULT_HEARTBEAT)
    grace = getattr(args, "grace", DEFAULT_GRACE)
    return open_storage(
        args.storage, heartbeat=heartbeat, grace=grace, create_folder=create and not args.storage
    )


def _list(args, out: TextIO) -> int:
    from fmnist_gui.sweep.study import Sweep

    storage = _open_storage(args)
    names = Sweep.names(storage)
    if not names:
        print("no sweeps here yet", file=out)
    for name in names:
        status = Sweep.open(storage, name).status()
        seeds = sum(o.seeds.finished for o in status.optimizers)
        seeds_budget = sum(o.seeds.budget for o in status.optimizers)
        state = "complete" if status.done else "in progress"
        print(
            f"{name}: {', '.join(o.optimizer for o in status.optimizers)}; "
            f"{status.trials_finished}/{status.trials_budget} trials, "
            f"{seeds}/{seeds_budget} seed runs; {state}",
            file=out,
        )
    return EXIT_OK


def _report(args, out: TextIO) -> int:
    from fmnist_gui.sweep.report import TRIALS_CSV, format_table, write_plots, write_trials_csv
    from fmnist_gui.sweep.results import collect_results
    from fmnist_gui.sweep.study import Sweep

    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file; give a folder")
    storage = _open_storage(args)
    results = collect_results(Sweep.open(storage, args.study))
    print(format_table(results), file=out)
    if args.out is not None:
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            written = [write_trials_csv(results, args.out / TRIALS_CSV)]
            written += write_plots(results, args.out)
        except OSError as exc:
            raise UsageError(f"cannot write into {args.out}: {exc.strerror or exc}") from None
        for path in written:
            print(f"wrote {path}", file=out)
    return EXIT_OK


# ----- run and worker ----------------------------------------------------------------------
def _work(args, out: TextIO) -> int:
    jobs = default_jobs() if args.jobs is None else args.jobs
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    threads = threads_per_worker(jobs) if args.threads is None else args.threads
    if threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")

    import torch

    from fmnist_gui.plugins.host import get_plugin_manager
    from fmnist_gui.sweep.study import Sweep
    from fmnist_gui.training.data import DataError, load_dataset

    torch.set_num_threads(threads)
    storage = _open_storage(args, create=args.command == "run")
    # A worker learns first whether there is a sweep to join, before loading anything.
    joined = Sweep.open(storage, args.study) if args.command == "worker" else None
    plugins = get_plugin_manager(args.plugin_dir)
    data_root = args.data_dir or default_data_root()
    try:
        data = load_dataset(data_root, allow_download=not args.no_download)
    except DataError as exc:
        raise UsageError(str(exc)) from None

    if joined is None:
        sweep, created = Sweep.create(
            storage, args.study, _spec_from_args(args, storage, plugins, data)
        )
        # Fixed ids: a one-worker sweep draws the same trials every time it runs.
        ids = [str(i) for i in range(jobs)]
    else:
        sweep, created = joined, False
        base = args.id or f"{socket.gethostname()}-{os.getpid()}"
        ids = [base] if jobs == 1 else [f"{base}-{i}" for i in range(jobs)]
    _print_header(sweep, created, jobs, threads, args, out)

    if jobs == 1:
        status = _work_here(sweep, data, plugins, ids[0], args, out)
    else:
        status = _work_in_processes(sweep, ids, threads, data_root, args, out)

    from fmnist_gui.sweep.report import format_table
    from fmnist_gui.sweep.results import collect_results

    print(format_table(collect_results(sweep)), file=out)
    if status == "stopped":
        print(f"{PROG}: stopped; run the same command again to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if status == "complete" else EXIT_FAILED


def _spec_from_args(args, storage, plugins, data) -> SweepSpec:
    """The stored sweep's settings overlaid with those given, or the defaults for a new one."""
    from dataclasses import fields, replace

    from fmnist_gui.sweep.study import Sweep
    from fmnist_gui.sweep.worker import data_identity, make_spec, sweep_data

    stored = Sweep.find_spec(storage, args.study)
    spec = stored or SweepSpec(spaces=())
    given = {
        "trials": args.trials,
        "epochs": args.epochs,
        "seeds": args.seeds,
        "batch_size": args.batch_size,
        "subset": args.subset,
        "shuffle": args.shuffle,
        "loss": args.loss,
        "seed": args.seed,
        "pruner": args.pruner,
        "target_accuracy": args.target,
    }
    spec = replace(spec, **{k: v for k, v in given.items() if v is not None})
    if stored is None or args.optimizers is not None or args.tune or args.set:
        # Plugin, space and setting errors are FmnistErrors: _main makes them usage errors.
        names = _split_names(args.optimizers) if args.optimizers else list(DEFAULT_OPTIMIZERS)
        specs = [plugins.optimizer(n) for n in names]
        requests = [parse_tune(item) for item in args.tune]
        fixed = [_parse_set(item, specs) for item in args.set]
        settings = {f.name: getattr(spec, f.name) for f in fields(spec)}
        del settings["spaces"], settings["data"]
        return make_spec(plugins, data, names, tune=requests, fixed=fixed, **settings)
    spec.validate()
    return spec.with_data(data_identity(sweep_data(data, spec.subset)))


def _split_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError("--optimizers needs at least one name, e.g. sgd,adam")
    return names


def _split_key(key: str) -> tuple[str | None, str]:
    """``sgd.momentum`` -> (sgd, momentum); ``betas.1`` -> (None, betas.1)."""
    first, dot, rest = key.partition(".")
    if dot and not rest.isdigit():
        return first, rest
    return None, key


def parse_tune(text: str) -> TuneRequest:
    """``[OPT.]PARAM[=LOW:HIGH[:log]]`` -> ``TuneRequest``; ``UsageError`` when malformed."""
    key, sep, spec = text.partition("=")
    key = key.strip()
    if not key:
        raise UsageError(f"--tune {text!r}: name a hyperparameter, e.g. --tune momentum")
    optimizer, name = _split_key(key)
    if not sep:
        return TuneRequest(name, None, optimizer)
    parts = [p.strip() for p in spec.split(":")]
    log = None
    if len(parts) == 3 and parts[2].lower() in ("log", "linear"):
        log = parts[2].lower() == "log"
        parts = parts[:2]
    if len(parts) != 2:
        raise UsageError(f"--tune {text!r}: write the range as LOW:HIGH or LOW:HIGH:log")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"--tune {text!r}: {spec!r} is not LOW:HIGH numbers") from None
    return TuneRequest(name, Range(low, high, log), optimizer)


def _parse_set(text: str, specs) -> tuple[str | None, str, object]:
    from fmnist_gui.plugins.specs import ParamError

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set {text!r} is not [OPTIMIZER.]PARAM=VALUE")
    optimizer, name = _split_key(key.strip())
    owners = [s for s in specs if optimizer in (None, s.name)]
    for spec in owners:
        try:
            return optimizer, name, spec.param(name).parse(value)
        except ParamError as exc:
            if optimizer is not None or "has no parameter" not in str(exc):
                raise UsageError(f"--set {text}: {exc}") from None
    raise UsageError(f"--set {text}: no optimizer of this sweep has a parameter {name!r}")


def _print_header(sweep, created: bool, jobs: int, threads: int, args, out: TextIO) -> None:
    from fmnist_gui.sweep.storage import describe_url, normalize_url

    spec = sweep.spec
    status = sweep.status()
    where = describe_url(normalize_url(args.storage)) if args.storage else "the default storage"
    if created:
        what = f"new sweep {sweep.name!r}"
    else:
        what = (
            f"continuing sweep {sweep.name!r} ({status.trials_finished}/"
            f"{status.trials_budget} trials done)"
        )
    tuned = "; ".join(
        f"{s.optimizer}: " + ", ".join(d.describe() for d in s.dimensions) for s in spec.spaces
    )
    print(
        f"{what} in {where}: {spec.trials} trials x {spec.epochs} epochs per "
        f"optimizer, then {spec.seeds} seeds; tuning {tuned}; {jobs} worker(s) x {threads} "
        "thread(s)",
        file=out,
        flush=True,
    )


@contextlib.contextmanager
def _first_interrupt_stops(stop, out: TextIO):
    """The first Ctrl-C asks the workers to stop after their batch; a second quits."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    asked: list[bool] = []

    def handler(signum, frame):
        if asked:
            raise KeyboardInterrupt
        asked.append(True)
        stop()
        print(
            f"{PROG}: stopping after the current batch (the trial runs again next time); "
            "Ctrl-C again to quit at once",
            file=sys.stderr,
            flush=True,
        )

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _work_here(sweep, data, plugins, worker_id: str, args, out: TextIO) -> str:
    from fmnist_gui.sweep.worker import SweepWorker

    stop = threading.Event()
    printer = EventPrinter(sweep.spec, out, show_worker=False)
    worker = SweepWorker(
        sweep,
        data,
        plugins,
        worker_id=worker_id,
        device=args.device,
        on_event=printer,
        should_stop=stop.is_set,
    )
    with _first_interrupt_stops(stop.set, out):
        return worker.run()


def _work_in_processes(sweep, ids, threads: int, data_root, args, out: TextIO) -> str:
    from fmnist_gui.sweep.events import WorkerEnded
    from fmnist_gui.sweep.pool import WorkerPool, WorkerSetup
    from fmnist_gui.sweep.storage import normalize_url

    setup = WorkerSetup(
        storage_url=normalize_url(args.storage) if args.storage else _default_url(),
        study=sweep.name,
        data_dir=Path(data_root),
        allow_download=False,  # the parent has fetched it already
        plugin_dirs=tuple(args.plugin_dir) if args.plugin_dir is not None else None,
        device=args.device,
        threads=threads,
        heartbeat=args.heartbeat,
        grace=args.grace,
    )
    pool = WorkerPool(setup, ids)
    printer = EventPrinter(sweep.spec, out, show_worker=True)
    ends = []
    with _first_interrupt_stops(pool.request_stop, out):
        try:
            for event in pool.events():
                printer(event)
                if isinstance(event, WorkerEnded):
                    ends.append(event.status)
        except KeyboardInterrupt:
            pool.kill()
            raise
    if any(s in ("error", "crashed") for s in ends):
        return "failed"
    return "stopped" if "stopped" in ends else "complete"


def _default_url() -> str:
    from fmnist_gui.sweep.storage import default_storage_url

    return default_storage_url()


class EventPrinter:
    """One line per trial start, epoch and end; worker ends and waits too."""

    def __init__(self, spec: SweepSpec, out: TextIO, *, show_worker: bool) -> None:
        self.spec, self.out, self.show_worker = spec, out, show_worker

    def __call__(self, event) -> None:
        line = self.format(event)
        if line is not None:
            print(line, file=self.out, flush=True)

    def format(self, event) -> str | None:
        from fmnist_gui.sweep.events import (
            TrialEnded,
            TrialEpoch,
            TrialStarted,
            WorkerEnded,
            WorkerWaiting,
        )
        from fmnist_gui.sweep.report import describe_settings

        who = f"[{event.worker}] " if self.show_worker else ""
        if isinstance(event, WorkerWaiting):
            return f"{who}{event.message}"
        if isinstance(event, WorkerEnded):
            return f"{who}worker {event.status}" + (f": {event.message}" if event.message else "")
        trial = f"{event.optimizer} " + (
            f"trial {event.number}" if event.phase == "tune" else f"seed run {event.number}"
        )
        if isinstance(event, TrialStarted):
            space = self.spec.space(event.optimizer)
            shown = {k: v for k, v in event.params.items() if space.base.get(k) != _plain(v)}
            settings = describe_settings(event.lr, shown)
            extra = f", seed {event.seed}" if event.phase == "seeds" else ""
            again = f" (rerun of trial {event.retry_of})" if event.retry_of is not None else ""
            return f"{who}{trial} start: {settings}{extra}{again}"
        if isinstance(event, TrialEpoch):
            return (
                f"{who}{trial} epoch {event.epoch}/{event.epochs}: test accuracy "
                f"{event.test_accuracy:.2%}, {event.train_seconds:.1f} s"
            )
        if isinstance(event, TrialEnded):
            if event.outcome == "complete":
                return f"{who}{trial} complete: {event.value:.2%}"
            return f"{who}{trial} {event.outcome}: {event.reason}"
        return None


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


if __name__ == "__main__":
    sys.exit(main())
