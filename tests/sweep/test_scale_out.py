"""Several worker processes on one study, as on several machines: `fmnist-sweep worker`.

Real processes, a real SQLite file or a real PostgreSQL server, real SIGKILL.
"""

from __future__ import annotations

import re
import signal
import threading
import time
import uuid

import pytest
from optuna.trial import TrialState

from fmnist_gui.sweep.study import SURPLUS, counted_trials
from fmnist_gui.training.data import load_dataset
from tests.sweep.conftest import new_sweep, start_sweep_cli

STARTED = re.compile(r"^(\w+) (trial|seed run) (\d+) start")


def _worker(url, name, root, worker_id, *extra):
    return start_sweep_cli(
        "worker",
        "--storage",
        url,
        "--study",
        name,
        "--data-dir",
        root,
        "--no-download",
        "--jobs",
        1,
        "--threads",
        1,
        "--id",
        worker_id,
        "--heartbeat",
        1,
        "--grace",
        3,
        *extra,
    )


def _started(stdout: str) -> set[tuple[str, str, int]]:
    found = set()
    for line in stdout.splitlines():
        match = STARTED.match(line)
        if match:
            optimizer, kind, number = match.groups()
            found.add((optimizer, "tune" if kind == "trial" else "seeds", int(number)))
    return found


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return request.getfixturevalue("postgres_url")


def test_two_worker_processes_share_one_study_and_never_run_a_trial_twice(
    storage_url, longer_root, plugins
):
    data = load_dataset(longer_root, allow_download=False)
    name = f"two-{uuid.uuid4().hex[:8]}"  # the PostgreSQL server serves the whole session
    sweep = new_sweep(
        storage_url, data, plugins, name, optimizers=("sgd", "adam"), trials=4, seeds=1
    )
    workers = {w: _worker(storage_url, name, longer_root, w) for w in ("A", "B")}
    outputs = {w: p.communicate(timeout=200) for w, p in workers.items()}
    for w, p in workers.items():
        assert p.returncode == 0, outputs[w][1]
        assert "worker complete" in outputs[w][0]

    ran = {w: _started(out) for w, (out, _) in outputs.items()}
    assert ran["A"], "both workers should have taken trials"
    assert ran["B"], "both workers should have taken trials"
    assert not ran["A"] & ran["B"], f"trials run by both workers: {ran['A'] & ran['B']}"

    stored = {}
    for optimizer in ("sgd", "adam"):
        for phase, trials in (
            ("tune", sweep.tuning_trials(optimizer)),
            ("seeds", sweep.seed_trials(optimizer)),
        ):
            for t in trials:
                if t.user_attrs.get("outcome") == SURPLUS:
                    # Both reached for the last place at once: the later one ran nothing.
                    assert t.state == TrialState.FAIL
                    assert not t.params
                    continue
                assert t.state in (TrialState.COMPLETE, TrialState.PRUNED), (optimizer, t)
                stored[optimizer, phase, t.number] = t.user_attrs["worker"]
            # The budget is exact: 4 tuning trials, 1 seed run, none twice.
            assert len(counted_trials(trials)) == (4 if phase == "tune" else 1)
    assert set(stored) == ran["A"] | ran["B"]
    for key, worker in stored.items():
        assert key in ran[worker]  # the trial names the worker that printed it


class Lines:
    """A process's stdout lines, read by a thread of their own as they come."""

    def __init__(self, process) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.lines and predicate(self.lines):
                return self.lines[-1]
            if not self._thread.is_alive() and not predicate(self.lines or [""]):
                break
            time.sleep(0.02)
        raise AssertionError("never saw the expected line; got:\n" + "\n".join(self.lines))

    def join(self) -> str:
        self._thread.join(timeout=30)
        return "\n".join(self.lines)


def test_a_killed_worker_loses_nothing_its_trial_is_retried_by_the_other(
    sqlite_url, longer_root, plugins
):
    data = load_dataset(longer_root, allow_download=False)
    sweep = new_sweep(sqlite_url, data, plugins, "kill", trials=4, epochs=3)
    victim = _worker(sqlite_url, "kill", longer_root, "A")
    survivor = _worker(sqlite_url, "kill", longer_root, "B")
    victim_lines, survivor_lines = Lines(victim), Lines(survivor)
    # Both at work, then the victim mid-trial (an epoch done, more to go): SIGKILL.
    for lines in (victim_lines, survivor_lines):
        lines.wait_for(lambda ls: any(STARTED.match(line) for line in ls))
    last = victim_lines.wait_for(lambda ls: re.match(r"^sgd trial \d+ epoch [12]/3", ls[-1]))
    victim.send_signal(signal.SIGKILL)
    killed = int(re.match(r"^sgd trial (\d+)", last).group(1))
    victim.wait(timeout=30)
    victim_lines.join()
    assert victim.returncode == -signal.SIGKILL

    assert survivor.wait(timeout=200) == 0, survivor.stderr.read()
    out = survivor_lines.join()
    for process in (survivor, victim):
        process.stdout.close()
        process.stderr.close()
    assert f"(rerun of trial {killed})" in out

    trials = {t.number: t for t in sweep.tuning_trials("sgd")}
    dead = trials[killed]
    assert dead.state == TrialState.FAIL  # failed by its stale heartbeat
    assert dead.user_attrs["outcome"] == "running"  # it never got to say anything else
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["worker"] == "B"
    assert retry.params == dead.params
    counted = counted_trials(list(trials.values()))
    assert len(counted) == 4
    assert all(t.state == TrialState.COMPLETE for t in counted)
