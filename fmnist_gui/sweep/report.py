"""A sweep's report: the protocol table, CSV files of every trial, and PNG plots.

The plots are the protocol's three views: best accuracy so far against trial
number, final accuracy against the learning rate on a log axis (how sensitive
each optimizer is to it), and per-epoch test accuracy over the seed runs as
mean with a band. matplotlib draws them off screen (Agg): no Qt here.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from fmnist_gui.sweep.results import OptimizerResult, SweepResults, TrialRow

TRIALS_CSV = "trials.csv"
PLOTS = ("best_so_far.png", "lr_sensitivity.png", "seeds_band.png")


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2%}"


def describe_settings(lr: float | None, params: dict) -> str:
    """``lr=0.0123, momentum=0.5``: the learning rate first, then the others."""
    parts = [] if lr is None else [f"lr={lr:.3g}"]
    for name, value in params.items():
        if name == "lr":
            continue
        if isinstance(value, float):
            parts.append(f"{name}={value:.3g}")
        elif isinstance(value, (list, tuple)):
            parts.append(f"{name}=" + ",".join(f"{v:.3g}" for v in value))
        else:
            parts.append(f"{name}={str(value).lower() if isinstance(value, bool) else value}")
    return ", ".join(parts)


def format_table(results: SweepResults) -> str:
    """The protocol table: tuning outcome and best setting, then the seed statistics."""
    spec = results.spec
    target = f"to {spec.target_accuracy:.0%}"
    header = (
        "optimizer",
        "trials",
        "pruned",
        "diverged",
        "failed",
        "best",
        "best setting",
        "seeds",
        "mean",
        "std",
        "min",
        "max",
        f"epochs {target}",
        f"seconds {target}",
    )
    rows = [header]
    for o in results.optimizers:
        best = o.best
        s = o.stats
        rows.append(
            (
                o.optimizer,
                f"{sum(t.state in ('complete', 'pruned', 'failed') for t in o.counted)}"
                f"/{spec.trials}",
                str(o.count("pruned")),
                str(o.count("diverged")),
                str(o.count("failed")),
                _pct(best.value if best else None),
                describe_settings(best.lr, best.params) if best else "-",
                f"{s.runs}/{spec.seeds}" if s else f"0/{spec.seeds}",
                _pct(s.mean if s else None),
                f"{s.std * 100:.2f}" if s else "-",
                _pct(s.min if s else None),
                _pct(s.max if s else None),
                describe_reached(s, "epochs"),
                describe_reached(s, "seconds"),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        f"sweep {results.name!r}: {spec.trials} trials of up to {spec.epochs} epochs per "
        f"optimizer, then {spec.seeds} seeds of the best; pruning ({spec.pruner}) saved "
        f"{results.epochs_saved} of {results.epochs_budget} tuning epochs",
    ]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    lines.append("std in accuracy points; time to target averaged over the seeds that reached it")
    return "\n".join(lines)


def describe_reached(stats, what: str, missing: str = "-") -> str:
    """Epochs or seconds (``what``) to the target accuracy, with how many seed runs got there."""
    if stats is None:
        return missing
    value = stats.epochs_to_target if what == "epochs" else stats.seconds_to_target
    if value is None:
        return f"never (0/{stats.runs})"
    shown = f"{value:.1f}"
    return shown if stats.reached == stats.runs else f"{shown} ({stats.reached}/{stats.runs})"


def write_trials_csv(results: SweepResults, path: Path) -> Path:
    """Every trial, tuning and seed runs, one row each; per-epoch accuracy in columns."""
    spec = results.spec
    params = sorted(
        {
            name
            for o in results.optimizers
            for t in (*o.trials, *o.seed_runs)
            for name in t.settings
            if name != "lr"
        }
    )
    header = [
        "sweep",
        "optimizer",
        "phase",
        "number",
        "state",
        "outcome",
        "counted",
        "final_accuracy",
        "lr",
        *params,
        "seed",
        "epochs_run",
        *(f"accuracy_epoch_{e + 1}" for e in range(spec.epochs)),
        "train_seconds",
        "duration_seconds",
        "worker",
        "retry_of",
        "reason",
    ]
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for o in results.optimizers:
            for t in (*o.trials, *o.seed_runs):
                values = t.settings
                writer.writerow(
                    [
                        results.name,
                        t.optimizer,
                        t.phase,
                        t.number,
                        t.state,
                        t.outcome,
                        int(t.counted),
                        _num(t.value),
                        _num(t.lr),
                        *(_cell(values.get(p)) for p in params),
                        "" if t.seed is None else t.seed,
                        t.epochs_run,
                        *(_num(a) for a in _padded(t.accuracy, spec.epochs)),
                        _num(t.train_seconds[-1] if t.train_seconds else None),
                        _num(t.duration_seconds),
                        t.worker,
                        "" if t.retry_of is None else t.retry_of,
                        t.reason,
                    ]
                )
    return path


def _padded(values: Sequence[float], n: int) -> list[float | None]:
    return [*values[:n], *([None] * (n - len(values[:n])))]


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ";".join(repr(float(v)) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


# ----- plots --------------------------------------------------------------------------
def write_plots(results: SweepResults, folder: Path) -> list[Path]:
    """The three PNG plots into ``folder``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in zip(PLOTS, (_plot_best, _plot_lr, _plot_band), strict=True):
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        try:
            draw(ax, results)
            ax.grid(True, alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="best", fontsize=8)
            fig.tight_layout()
            path = folder / name
            fig.savefig(path)
            paths.append(path)
        finally:
            plt.close(fig)
    return paths


def _plot_best(ax, results: SweepResults) -> None:
    from matplotlib.ticker import MaxNLocator

    for o in results.optimizers:
        ys = [100 * y for y in o.best_so_far()]
        xs = range(1, len(ys) + 1)
        ax.plot(xs, ys, drawstyle="steps-post", marker="o", markersize=3, label=o.optimizer)
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("best test accuracy so far (%)")
    ax.set_title(f"Tuning: best so far ({results.spec.epochs} epochs per trial)")


def _plot_lr(ax, results: SweepResults) -> None:
    for index, o in enumerate(results.optimizers):
        color = f"C{index}"
        done = [t for t in o.counted if t.state == "complete" and t.lr]
        cut = [
            t for t in o.counted if t.outcome == "pruned" and t.lr and t.last_accuracy is not None
        ]
        lost = [t for t in o.counted if t.outcome == "diverged" and t.lr]
        ax.scatter(
            [t.lr for t in done],
            [100 * (t.value or 0.0) for t in done],
            color=color,
            label=o.optimizer,
        )
        if cut:
            ax.scatter(
                [t.lr for t in cut],
                [100 * (t.last_accuracy or 0.0) for t in cut],
                facecolors="none",
                edgecolors=color,
                label=f"{o.optimizer} pruned (last epoch run)",
            )
        if lost:
            ax.scatter(
                [t.lr for t in lost],
                [0] * len(lost),
                marker="x",
                color=color,
                label=f"{o.optimizer} diverged",
            )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log)")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title("Sensitivity to the learning rate")


def _plot_band(ax, results: SweepResults) -> None:
    from matplotlib.ticker import MaxNLocator

    drawn = False
    for index, o in enumerate(results.optimizers):
        s = o.stats
        if s is None:
            continue
        color = f"C{index}"
        epochs = list(range(1, len(s.curve_mean) + 1))
        mean = [100 * m for m in s.curve_mean]
        # Accuracy lives in 0..100 %: a wide band is cut there rather than drawn past it.
        low = [max(0.0, 100 * (m - d)) for m, d in zip(s.curve_mean, s.curve_std, strict=True)]
        high = [min(100.0, 100 * (m + d)) for m, d in zip(s.curve_mean, s.curve_std, strict=True)]
        ax.plot(epochs, mean, marker="o", color=color, label=f"{o.optimizer} mean of {s.runs}")
        ax.fill_between(epochs, low, high, color=color, alpha=0.25)
        ax.plot(epochs, [100 * v for v in s.curve_min], color=color, linestyle=":", linewidth=1)
        ax.plot(epochs, [100 * v for v in s.curve_max], color=color, linestyle=":", linewidth=1)
        drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no seed runs finished yet", ha="center", transform=ax.transAxes)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Best settings over seeds: mean, ±1 std band, min/max dotted")


def best_rows(result: OptimizerResult) -> list[TrialRow]:
    """Counted complete trials, best first (the GUI's ranking)."""
    done = [t for t in result.counted if t.state == "complete"]
    return sorted(done, key=lambda t: (-(t.value or 0.0), t.number))


__all__ = [
    "PLOTS",
    "TRIALS_CSV",
    "best_rows",
    "describe_settings",
    "format_table",
    "write_plots",
    "write_trials_csv",
]
