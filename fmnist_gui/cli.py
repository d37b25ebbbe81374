"""``fmnist-train``: the tutorial's training run from the command line.

It prints the tutorial's lines exactly (``Epoch N``, ``loss: ...``,
``Test Error:``, `` Accuracy: ...``, ``Done!``). Bad input is one line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

from fmnist_gui import __version__
from fmnist_gui.errors import FmnistError
from fmnist_gui.system.console import CtrlC, console_main
from fmnist_gui.system.options import add_data_options, add_plugin_dir_option
from fmnist_gui.system.paths import default_data_root
from fmnist_gui.training.config import TrainConfig
from fmnist_gui.training.tutorial_log import format_event

if TYPE_CHECKING:  # the checkpoint package imports torch
    from fmnist_gui.checkpoint import CheckpointFile
    from fmnist_gui.training.events import RunEnd

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
# --on-divergence rollback: how many times, each with the lr halved, before giving up.
MAX_ROLLBACKS = 5

EXIT_CODES = (
    "exit codes: 0 finished; 1 failed (a plugin error, a failed save); 2 bad input; "
    "3 diverged (a loss, test loss, weight or optimizer state was not finite, or the "
    "loss spiked): nothing non-finite was saved or recorded; 130 interrupted"
)


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage dump
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = _ArgumentParser(
        prog="fmnist-train",
        description="Train the PyTorch tutorial's Fashion-MNIST network. "
        "Defaults are the tutorial's.",
        epilog=EXIT_CODES,
    )
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=float, default=d.lr, help=f"learning rate, default {d.lr:g}")
    p.add_argument(
        "--optimizer",
        default=d.optimizer,
        metavar="NAME",
        help=f"an installed optimizer plugin (default {d.optimizer}; see --list-plugins)",
    )
    p.add_argument(
        "--opt-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an optimizer hyperparameter, e.g. momentum=0.9 (repeatable)",
    )
    p.add_argument(
        "--loss",
        default=d.loss,
        metavar="NAME",
        help=f"an installed loss plugin (default {d.loss})",
    )
    p.add_argument(
        "--loss-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a loss hyperparameter (repeatable)",
    )
    p.add_argument(
        "--scheduler",
        default=d.scheduler,
        metavar="NAME",
        help=f"an installed learning-rate schedule, stepped per batch (default {d.scheduler})",
    )
    p.add_argument(
        "--sched-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a schedule hyperparameter, e.g. eta_min=0.0001 (repeatable)",
    )
    p.add_argument(
        "--changes",
        type=Path,
        default=None,
        metavar="FILE",
        help='replay live changes: a JSON list of {"step": N, "lr": x}, each applied '
        "after N batches (with --resume, those the checkpoint already has are skipped)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed torch first, as torch.manual_seed(S) at the top of the tutorial's script",
    )
    p.add_argument(
        "--shuffle",
        action="store_true",
        help="shuffle the training set each epoch (the tutorial does not)",
    )
    p.add_argument(
        "--on-divergence",
        choices=["stop", "rollback"],
        default="stop",
        help="when training diverges: stop (exit code 3, the default), or roll back to "
        f"the last good state with the learning rate halved (up to {MAX_ROLLBACKS} times)",
    )
    p.add_argument(
        "--spike-factor",
        type=float,
        default=None,
        metavar="F",
        help="also treat a batch loss over F times the smoothed loss as divergence "
        "(default: off; only non-finite numbers are)",
    )
    p.add_argument("--device", default=d.device, choices=["auto", "cpu", "cuda"])
    add_data_options(p)
    p.add_argument(
        "--prepare-data",
        action="store_true",
        help="make sure the dataset is under the data folder, then exit",
    )
    p.add_argument(
        "--find-lr",
        action="store_true",
        help="do not train: run a learning-rate range test on a copy of the model these "
        "options (or --resume) give, and print the suggested lr",
    )
    p.add_argument(
        "--metrics-json",
        type=Path,
        default=None,
        metavar="PATH",
        help="write one JSON object per epoch (JSON Lines)",
    )
    p.add_argument(
        "--save",
        type=Path,
        default=None,
        metavar="PATH",
        help="save a checkpoint to PATH at each epoch end and when stopped "
        "(Ctrl-C then stops at the next batch and saves)",
    )
    p.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="PATH",
        help="continue the training saved in PATH: optimizer, loss, their "
        "settings and the seed come from it; --epochs is the total",
    )
    p.add_argument(
        "--init-weights",
        type=Path,
        default=None,
        metavar="PATH",
        help="start from the model weights in PATH (a checkpoint, or a file "
        "from torch.save(model.state_dict(), PATH))",
    )
    add_plugin_dir_option(p)
    p.add_argument(
        "--list-plugins",
        action="store_true",
        help="list the installed plugins, errors included, and exit",
    )
    p.add_argument(
        "--safe-mode",
        action="store_true",
        help="load the built-in plugins only (when a plugin stops fmnist-train from starting)",
    )
    p.add_argument("--version", action="version", version=f"fmnist-train {__version__}")
    return p


@console_main  # a real Ctrl-C told from a plugin's; exits even if a plugin's thread lingers
def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv, sys.stdout)
    except UsageError as exc:
        print(f"fmnist-train: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fmnist-train: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: list[str] | None, out: TextIO) -> int:
    args = build_parser().parse_args(argv)
    _refuse_repeated_keys("--opt-param", args.opt_param)
    _refuse_repeated_keys("--loss-param", args.loss_param)
    for folder in args.plugin_dir or ():
        if not folder.is_dir():
            problem = "is not a folder" if folder.exists() else "no such folder"
            raise UsageError(f"--plugin-dir {folder}: {problem}")

    # Imports that pull in torch wait until the arguments are known to be sane.
    from fmnist_gui.plugins.host import get_plugin_manager
    from fmnist_gui.plugins.safemode import take_previous_crash
    from fmnist_gui.training.data import DataError, ensure_dataset, load_dataset, raw_folder
    from fmnist_gui.training.driver import RunDriver
    from fmnist_gui.training.sentinel import Sentinel
    from fmnist_gui.training.trainer import Trainer

    crash = take_previous_crash()  # the last start died while loading plugins
    if crash is not None and not args.safe_mode:
        hint = "If it happens again, run with --safe-mode (built-in plugins only)."
        print(f"fmnist-train: {crash.message} {hint}", file=sys.stderr)
    plugins = get_plugin_manager(args.plugin_dir, probe=True, safe_mode=args.safe_mode)
    if args.list_plugins:
        print_plugins(plugins, out)
        return EXIT_OK

    from fmnist_gui import checkpoint as ckpt

    checkpoint = initial_state = None
    if args.resume is not None:
        if args.init_weights is not None:
            raise UsageError(
                "--resume and --init-weights exclude each other: --resume "
                "continues a training, --init-weights starts a new one"
            )
        checkpoint = _read_resume(args, argv, plugins)
    else:
        try:
            opt_params = plugins.optimizer(args.optimizer).parse_assignments(args.opt_param)
            loss_params = plugins.loss(args.loss).parse_assignments(args.loss_param)
            sched_params = plugins.scheduler(args.scheduler).parse_assignments(args.sched_param)
            config = TrainConfig(
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                optimizer=args.optimizer,
                optimizer_params=opt_params,
                loss=args.loss,
                loss_params=loss_params,
                scheduler=args.scheduler,
                scheduler_params=sched_params,
                seed=args.seed,
                shuffle=args.shuffle,
                device=args.device,
            ).validate()
        except FmnistError as exc:
            raise UsageError(str(exc)) from None
        if args.init_weights is not None:
            try:
                initial_state = ckpt.load_weights(args.init_weights)
            except ckpt.CheckpointError as exc:
                raise UsageError(str(exc)) from None
    # Checked now, not when the first epoch ends and its results would be lost.
    _check_output_path("--save", args.save)
    _check_output_path("--metrics-json", args.metrics_json, in_place=True)
    changes = None
    if args.changes is not None:
        from fmnist_gui.training.schedule import load_changes

        try:
            changes = load_changes(args.changes)
        except FmnistError as exc:
            raise UsageError(f"--changes: {exc}") from None

    data_root = args.data_dir or default_data_root()
    if args.prepare_data:
        try:
            ensure_dataset(data_root, allow_download=not args.no_download)
        except DataError as exc:
            raise UsageError(str(exc)) from None
        print(f"Fashion-MNIST is ready in {raw_folder(data_root)}", file=out)
        return EXIT_OK
    try:
        data = load_dataset(data_root, allow_download=not args.no_download)
    except DataError as exc:
        raise UsageError(str(exc)) from None
    try:
        if checkpoint is not None:
            trainer = ckpt.trainer_from_checkpoint(
                checkpoint,
                data,
                plugins,
                path=args.resume,
                epochs=_resume_epochs(args, argv, checkpoint),
            )
        else:
            trainer = Trainer(config, data, plugins, initial_state=initial_state)
        if changes is not None:
            trainer.plan_changes(changes)
    except FmnistError as exc:
        raise UsageError(str(exc)) from None
    if args.find_lr:
        return _find_lr(trainer, data, plugins, out)
    if args.spike_factor is not None:
        try:
            trainer.sentinel = Sentinel(trainer, spike_factor=args.spike_factor)
        except ValueError as exc:
            raise UsageError(f"--spike-factor: {exc}") from None

    # Opened (and truncated) only once the run is sure to start.
    metrics = _open_metrics(args.metrics_json)
    driver = RunDriver(trainer)
    saver = _Saver(driver, args.save)
    rollbacks = 0
    with metrics or contextlib.nullcontext(), saver.stop_on_interrupt():
        while True:
            end = _run_once(driver, out, metrics, saver)
            if end is None:  # the metrics file failed; its line is printed
                return EXIT_USAGE
            if end.status == "diverged" and not saver.interrupted:
                print(f"fmnist-train: {end.message}", file=sys.stderr)
                if (
                    args.on_divergence == "rollback"
                    and rollbacks < MAX_ROLLBACKS
                    and trainer.sentinel.snapshot is not None
                ):
                    rollbacks += 1
                    line = trainer.sentinel.roll_back(halve_lr=True)
                    print(f"fmnist-train: {line}; training on", file=sys.stderr)
                    continue
                if args.on_divergence == "rollback":
                    print(f"fmnist-train: gave up after {rollbacks} rollbacks", file=sys.stderr)
                if saver.path is not None and saver.saved_once:
                    print(
                        f"fmnist-train: {saver.path} still holds the last good epoch",
                        file=sys.stderr,
                    )
                return EXIT_DIVERGED
            if end.status == "finished":
                return EXIT_OK if saver.ok else EXIT_FAILED
            print(f"fmnist-train: {end.status}: {end.message}", file=sys.stderr)
            if saver.path is not None and saver.ok and end.status == "stopped":
                print(
                    f"fmnist-train: saved {saver.path}; continue with --resume {saver.path}",
                    file=sys.stderr,
                )
            if saver.interrupted:
                return EXIT_INTERRUPTED
            return EXIT_FAILED


def _find_lr(trainer, data, plugins, out: TextIO) -> int:
    """``--find-lr``: the range test on a copy of ``trainer``'s model; prints the suggestion."""
    from dataclasses import replace

    from fmnist_gui.training.lr_finder import LRFinder

    config = replace(trainer.config, seed=trainer.seed)
    finder = LRFinder(config, data, plugins, weights=trainer.model.state_dict())
    end = finder.run_to_end()
    if end.status == "failed":
        print(f"fmnist-train: the range test failed: {end.message}", file=sys.stderr)
        return EXIT_FAILED
    if end.suggestion is None:
        print(
            "fmnist-train: the range test found no lr where the loss clearly falls "
            "(a model that has trained already often shows this)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    how = end.message or end.status
    print(f"suggested lr: {end.suggestion:.3g} ({len(finder.curve.lrs)} batches; {how})", file=out)
    return EXIT_OK


def _run_once(driver, out: TextIO, metrics, saver: _Saver) -> RunEnd | None:
    """One ``driver.run()``: prints, records and saves as it goes; returns its ``RunEnd``.

    None when the metrics file could not be written (after that epoch was saved).
    """
    from fmnist_gui.training.events import EpochEnd, RunEnd

    for event in driver.run():
        # The same lines as the desktop app's log panel (fmnist_gui.training.tutorial_log).
        line = format_event(event)
        if line is not None:
            print(line, file=out)
        if isinstance(event, EpochEnd):
            # A diverged epoch never gets here: its metrics are never recorded.
            saver.save()  # first: a failing metrics file must not cost the checkpoint
            if metrics is not None and not metrics.write(event.as_dict()):
                return None
        elif isinstance(event, RunEnd):
            if event.status == "stopped":
                # At a batch boundary: resumable. Not after a divergence, which
                # would replace the last good checkpoint with broken weights.
                saver.save()
            return event
    raise AssertionError("a run ends with a RunEnd")


# ----- checkpoints: --save, --resume -------------------------------------------------
# Settings that --resume takes from the checkpoint: (option, its dest).
_RESUMED_OPTIONS = (
    ("--batch-size", "batch_size"),
    ("--lr", "lr"),
    ("--optimizer", "optimizer"),
    ("--opt-param", "opt_param"),
    ("--loss", "loss"),
    ("--loss-param", "loss_param"),
    ("--scheduler", "scheduler"),
    ("--sched-param", "sched_param"),
    ("--seed", "seed"),
    ("--shuffle", "shuffle"),
)


def _explicit_options(argv: list[str] | None) -> dict:
    """Only the options given on the command line (no defaults)."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return vars(parser.parse_args(argv))


def _read_resume(args, argv, plugins) -> CheckpointFile:
    """Read the --resume checkpoint; options that contradict it are a usage error."""
    from fmnist_gui import checkpoint as ckpt

    try:
        checkpoint = ckpt.read_checkpoint(args.resume)
    except ckpt.CheckpointError as exc:
        raise UsageError(str(exc)) from None
    config = checkpoint["config"]
    saved = {
        "batch_size": config["batch_size"],
        "lr": config["lr"],
        "optimizer": checkpoint["optimizer"]["name"],
        "loss": checkpoint["loss"]["name"],
        "scheduler": _saved_scheduler(checkpoint)["name"],
        "seed": checkpoint["position"]["seed"],
        "shuffle": config["shuffle"],
    }
    given = _explicit_options(argv)
    if "device" in given:  # where to run is not part of the training: may change
        checkpoint["config"]["device"] = given["device"]
    for option, dest in _RESUMED_OPTIONS:
        if dest not in given:
            continue
        if dest in ("opt_param", "loss_param", "sched_param"):
            kind, entry = {
                "opt_param": ("optimizer", checkpoint["optimizer"]),
                "loss_param": ("loss", checkpoint["loss"]),
                "sched_param": ("scheduler", _saved_scheduler(checkpoint)),
            }[dest]
            differs = _params_differ(plugins, kind, entry, given[dest])
            value = " ".join(given[dest])
        else:
            differs = given[dest] != saved[dest]
            value = f"{given[dest]} (the checkpoint has {saved[dest]})"
        if differs:
            raise UsageError(
                f"{option} {value} differs from the checkpoint {args.resume}; --resume "
                f"continues that training with its own settings: leave {option} out, or "
                "start a new training without --resume"
            )
    return checkpoint


def _saved_scheduler(checkpoint: CheckpointFile) -> Mapping:
    """The checkpoint's schedule; files from before schedules existed ran "constant"."""
    return checkpoint.get("scheduler") or {"name": "constant", "params": {}}


def _params_differ(plugins, kind: str, entry: Mapping, assignments: list[str]) -> bool:
    try:
        spec = getattr(plugins, kind)(entry["name"])
        given = spec.resolve(spec.parse_assignments(assignments))
        saved = spec.resolve(entry["params"])
    except FmnistError:
        return True
    return any(given[k] != saved[k] for k in spec.parse_assignments(assignments))


def _resume_epochs(args, argv, checkpoint: CheckpointFile) -> int:
    """--epochs is the total; without it, the checkpoint's own total."""
    given = _explicit_options(argv)
    epochs = given.get("epochs", checkpoint["config"]["epochs"])
    done = checkpoint["position"]["epochs_done"]
    if epochs <= done:
        raise UsageError(
            f"{args.resume} already holds {done} finished epoch{'s' * (done != 1)}; "
            f"--epochs is the total, so ask for more: --epochs {done + 1} or more"
        )
    return epochs


def _refuse_repeated_keys(option: str, assignments: list[str]) -> None:
    """``--opt-param momentum=0.5 --opt-param momentum=0.6`` is a mistake, not a choice."""
    seen: set[str] = set()
    for item in assignments:
        key = item.partition("=")[0].strip()
        if key in seen:
            given = " ".join(
                f"{option} {a}" for a in assignments if a.partition("=")[0].strip() == key
            )
            raise UsageError(f"{option}: {key!r} is given more than once ({given}); give it once")
        seen.add(key)


def _check_output_path(option: str, path: Path | None, *, in_place: bool = False) -> None:
    """Fail before training, not after it, when an output file cannot be written."""
    from fmnist_gui.system.fileio import why_not_writable

    if path is None:
        return
    problem = why_not_writable(path, in_place=in_place)
    if problem is not None:
        raise UsageError(f"{option} {path}: {problem}")


class _Saver:
    """Writes the --save checkpoint; a failed save is reported and training goes on."""

    def __init__(self, driver, path: Path | None) -> None:
        self.driver, self.path = driver, path
        self.ok = True
        self.saved_once = False
        self.interrupted = False

    def save(self) -> None:
        if self.path is None:
            return
        from fmnist_gui.checkpoint import save_checkpoint

        try:
            # Called between two events of the run: at a batch boundary.
            save_checkpoint(self.path, self.driver.trainer.state_dict())
            self.ok = self.saved_once = True
        except FmnistError as exc:  # the file's problem, or the optimizer plugin's
            self.ok = False
            print(f"fmnist-train: error: {exc}", file=sys.stderr)

    @contextlib.contextmanager
    def stop_on_interrupt(self):
        """With --save, the first Ctrl-C stops at the next batch so the save is resumable."""
        if self.path is None or threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self.interrupted:
                raise CtrlC  # a second Ctrl-C: quit now, without saving
            self.interrupted = True
            self.driver.request_stop()
            print(
                f"fmnist-train: stopping at the next batch to save {self.path} "
                "(Ctrl-C again to quit without saving)",
                file=sys.stderr,
            )

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


#: A plugin offering more specs than this lists them below the table, one per line.
INLINE_PROVIDES = 8


def print_plugins(plugins, out: TextIO) -> None:
    """The plugin table (the manager dialog's columns), then every plugin's problem.

    A plugin with more than ``INLINE_PROVIDES`` specs shows counts in the
    table and its specs below it, one per line with their labels. A failed or
    untrusted plugin gets an ``error in plugin NAME (LOCATION): ...`` line; one
    whose specs failed the self-test such a line followed by one indented
    ``SPEC: reason`` line per spec; problems not tied to one plugin (an
    unreadable plugin folder) a ``warning:`` line.
    """
    rows = [("PLUGIN", "SOURCE", "VERSION", "STATUS", "PROVIDES")]
    listed = []
    for r in plugins.records.values():
        status = r.status + (f" ({len(r.rejected)} rejected)" if r.rejected else "")
        status += f" ({len(r.disabled_specs)} disabled)" if r.disabled_specs else ""
        provides = ", ".join(r.provides) or "-"
        if len(r.provides) > INLINE_PROVIDES:
            counts = [f"{len(r.optimizers)} optimizers" * bool(r.optimizers)]
            counts += [f"{len(r.losses)} losses" * bool(r.losses)]
            counts += [f"{len(r.schedulers)} schedulers" * bool(r.schedulers)]
            provides = ", ".join(c for c in counts if c) + " (below)"
            listed.append(r)
        rows.append((r.name, r.source, r.version or "-", status, provides))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = "  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True))
        print(f"{cells}  {row[4]}", file=out)
    for r in listed:
        specs = [
            *(plugins.optimizers[n] for n in r.optimizers),
            *(plugins.losses[n] for n in r.losses),
            *(plugins.schedulers[n] for n in r.schedulers),
        ]
        width = max(len(s.name) for s in specs)
        print(f"\n{r.name} offers:", file=out)
        for spec in specs:
            kind = (
                "optimizer"
                if spec.name in r.optimizers
                else "loss"
                if spec.name in r.losses
                else "scheduler"
            )
            print(f"  {kind}:{spec.name.ljust(width)}  {spec.label}", file=out)
    for r in plugins.errors:
        if r.status == "loaded" and r.rejected:
            print(
                f"error in plugin {r.name} ({r.location}): {len(r.rejected)} not offered "
                "(self-test failed):",
                file=out,
            )
            for name, reason in r.rejected.items():
                print(f"  {name}: {_without_spec_prefix(reason, name)}", file=out)
        else:
            print(f"error in plugin {r.name} ({r.location}): {r.error}", file=out)
    for r in plugins.records.values():
        if r.disabled_specs:
            print(
                f"disabled in plugin {r.name} (by you; enable in the app's Plugins → Manage "
                f"plugins…): {', '.join(r.disabled_specs)}",
                file=out,
            )
    for warning in plugins.warnings:
        print(f"warning: {warning}", file=out)


def _without_spec_prefix(reason: str, name: str) -> str:
    """``optimizer 'x': why`` -> ``why``: the line already starts with the name."""
    for kind in ("optimizer", "loss", "scheduler"):
        reason = reason.removeprefix(f"{kind} {name!r}: ")
    return reason


class _MetricsFile:
    """The --metrics-json file: one JSON object per epoch; a failed write is one line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.file: TextIO = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in __exit__
        except OSError as exc:
            raise UsageError(f"cannot write --metrics-json {path}: {exc.strerror or exc}") from None

    def write(self, row: Mapping[str, object]) -> bool:
        """Append ``row``; on failure say why on stderr and return False."""
        try:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()
        except OSError as exc:  # a full disk (ENOSPC), an I/O error (EIO)...
            print(
                f"fmnist-train: error: cannot write --metrics-json {self.path}: "
                f"{exc.strerror or exc}",
                file=sys.stderr,
            )
            return False
        return True

    def __enter__(self) -> _MetricsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        # Closing flushes again what a failed write left in the buffer: already reported.
        with contextlib.suppress(OSError):
            self.file.close()


def _open_metrics(path: Path | None) -> _MetricsFile | None:
    return None if path is None else _MetricsFile(path)


if __name__ == "__main__":
    sys.exit(main())
