"""The Compare tab: pick optimizer settings, race them from one start line, compare.

The list of competitors and their forms come from the plugin registry (the
combo lists whatever ``PluginHost.optimizers`` holds; each form is built from
the spec's ``Param`` schema by the same ``ParamForm`` the training panel
uses). ``fmnist_gui.training.race.Race`` does the training in a ``RaceWorker`` moved to
a tracked ``QThread`` (via ``Job``); the worker emits no signal per batch: it
queues only epoch and run ends, and a ``QTimer`` here pulls those and the
members' growing loss histories at most 30 times a second.
"""

from __future__ import annotations

import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from fmnist_gui.analysis.runs import RunList
from fmnist_gui.plugins.specs import ParamError
from fmnist_gui.qt.features.training.control_panel import ParamForm
from fmnist_gui.qt.infra.pacing import FramePacer
from fmnist_gui.qt.infra.worker import Job
from fmnist_gui.qt.widgets.plotting import RunPlots, is_dark, run_color
from fmnist_gui.qt.widgets.spec_chooser import SpecChooser
from fmnist_gui.qt.widgets.tables import schedule_refresh, table_item
from fmnist_gui.system.openmp import release_thread_pool
from fmnist_gui.training.config import MAX_BATCH_SIZE, ConfigError, TrainConfig
from fmnist_gui.training.events import BatchEnd, EpochEnd, RunEnd
from fmnist_gui.training.race import (
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    DEFAULT_OPTIMIZERS,
    Race,
    RaceEntry,
    RaceEvent,
    describe_entry,
)


class RaceWorker(QObject):
    """Runs one ``Race`` in a worker thread; the GUI pulls what it produced."""

    started = Signal()
    errored = Signal(str, str)  # message, traceback
    finished = Signal()

    def __init__(self, race: Race) -> None:
        super().__init__()
        self.race = race
        # Epoch and run ends, in order; deque appends and pops are atomic.
        self.events: deque[RaceEvent] = deque()
        self.last_batch: RaceEvent | None = None  # one attribute store per batch

    @Slot()
    def run(self) -> None:
        self.started.emit()
        try:
            for item in self.race.run():
                if type(item.event) is BatchEnd:
                    self.last_batch = item
                else:
                    self.events.append(item)
        except Exception as exc:  # noqa: BLE001 - reported, never raised into Qt
            self.errored.emit(f"{type(exc).__name__}: {exc}", traceback.format_exc())
        finally:
            self.finished.emit()


@dataclass
class EntryDraft:
    """A competitor as typed: parsed only when the race starts."""

    optimizer: str
    lr: str = f"{DEFAULT_LR:g}"
    params: dict[str, Any] = field(default_factory=dict)  # raw field values


class RaceView(QWidget):
    """Competitors on the left; overlaid curves and the results table on the right."""

    race_started = Signal(object)  # Race
    race_finished = Signal(object)  # Race
    message = Signal(str)

    def __init__(
        self,
        plugins: Any = None,
        data: Any = None,
        runs: RunList | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.plugins = plugins
        self.data = data
        self.runs = runs if runs is not None else RunList()
        self.drafts: list[EntryDraft] = []
        self.race: Race | None = None
        self.job: Job | None = None
        self.worker: RaceWorker | None = None
        self.run_ids: list[int] = []
        self._seen_losses: list[int] = []
        self._running_member: int | None = None  # the member whose batches come in now
        self.blocked_reason = ""  # e.g. the main training is running
        self._loading_editor = False
        self._build()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.pull)
        self.pacer = FramePacer(self.timer)  # as often as drawing can afford: pacing.py
        # Renames and hidden runs in the Runs tab show in the results table too.
        self._results_timer = QTimer(self, singleShot=True, interval=50)
        self._results_timer.timeout.connect(self._fill_results)
        self.runs.subscribe(self._on_runs_changed)
        if plugins is not None:
            self.set_plugins(plugins)
        self._update_buttons()

    # ----- building ---------------------------------------------------------------------
    def _build(self) -> None:
        self.entry_list = QListWidget()
        self.entry_list.setMinimumHeight(90)
        self.entry_list.currentRowChanged.connect(self._load_editor)
        self.add_button = QPushButton("Add")
        self.add_button.setToolTip("Add a competitor (a copy of the selected one)")
        self.add_button.clicked.connect(self.add_entry)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove_entry)
        self.defaults_button = QPushButton("Defaults")
        self.defaults_button.setToolTip("The tutorial's three optimizers at lr 1e-3")
        self.defaults_button.clicked.connect(self.reset_entries)
        entry_buttons = QHBoxLayout()
        for button in (self.add_button, self.remove_button, self.defaults_button):
            entry_buttons.addWidget(button)
        competitors = QGroupBox("Competitors")
        box = QVBoxLayout(competitors)
        box.addWidget(self.entry_list)
        box.addLayout(entry_buttons)

        self.optimizer_combo = SpecChooser()
        self.optimizer_combo.setObjectName("race_optimizer")
        self.optimizer_combo.currentIndexChanged.connect(self._optimizer_changed)
        self.lr_edit = QLineEdit()
        self.lr_edit.setToolTip("Learning rate for this competitor (the tutorial uses 1e-3)")
        self.lr_edit.textEdited.connect(self._store_editor)
        self.param_form = ParamForm("Hyperparameters")
        self.param_form.edited.connect(self._store_editor)
        editor = QGroupBox("Selected competitor")
        form = QFormLayout(editor)
        form.addRow("Optimizer:", self.optimizer_combo)
        form.addRow("Learning rate:", self.lr_edit)
        form.addRow(self.param_form)

        self.epochs_spin = QSpinBox(minimum=1, maximum=1000, value=DEFAULT_EPOCHS)
        self.batch_spin = QSpinBox(minimum=1, maximum=MAX_BATCH_SIZE, value=64)
        self.seed_edit = QLineEdit()
        self.seed_edit.setPlaceholderText("random")
        self.seed_edit.setToolTip(
            "Seed of the shared initial weights and batch order; empty draws a new one"
        )
        self.shuffle_check = QCheckBox("Shuffle each epoch (same order for all)")
        shared = QGroupBox("Shared by all")
        shared_form = QFormLayout(shared)
        shared_form.addRow("Epochs:", self.epochs_spin)
        shared_form.addRow("Batch size:", self.batch_spin)
        shared_form.addRow("Seed:", self.seed_edit)
        shared_form.addRow(self.shuffle_check)

        self.start_button = QPushButton("Start race")
        self.start_button.setToolTip(
            "Train every competitor from the same initial weights "
            "on the same batches, one epoch each in turn"
        )
        bold = QFont(self.start_button.font())
        bold.setBold(True)
        self.start_button.setFont(bold)
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        run_buttons = QHBoxLayout()
        run_buttons.addWidget(self.start_button, 2)
        run_buttons.addWidget(self.stop_button, 1)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 4, 0)
        left_layout.addWidget(competitors, 2)
        left_layout.addWidget(editor, 3)
        left_layout.addWidget(shared)
        left_layout.addLayout(run_buttons)
        left_layout.addWidget(self.status)
        left.setMinimumWidth(260)

        self.plots = RunPlots(self.runs)
        self.results = QTableWidget(0, 6)
        self.results.setHorizontalHeaderLabels(
            ["Competitor", "Test accuracy", "Test loss", "Time", "Samples/s", "Status"]
        )
        self.results.verticalHeader().hide()
        self.results.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.results.horizontalHeader()
        # Every column as wide as its contents; a narrow tab scrolls the table
        # rather than squeezing the competitor names to a few letters.
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.plots)
        right.addWidget(self.results)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 1)
        right.setSizes([520, 200])

        # The forms scroll when the window is too low for them, never squeezed.
        left_scroll = QScrollArea()
        left_scroll.setWidget(left)
        left_scroll.setWidgetResizable(True)
        left_scroll.setFrameShape(QFrame.Shape.NoFrame)
        left_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        left_scroll.setMinimumWidth(left.minimumSizeHint().width() + 16)
        splitter = QSplitter()
        splitter.addWidget(left_scroll)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([290, 990])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    # ----- competitors ---------------------------------------------------------------------
    def set_plugins(self, plugins: Any) -> None:
        """List ``plugins``' optimizers; keep drafts whose optimizer is still there."""
        self.plugins = plugins
        self.optimizer_combo.blockSignals(True)
        self.optimizer_combo.set_specs(plugins.optimizers, getattr(plugins, "records", None))
        self.optimizer_combo.blockSignals(False)
        kept = [d for d in self.drafts if d.optimizer in plugins.optimizers]
        if kept:
            self.drafts = kept
            self._fill_list()
        else:
            self.reset_entries()

    def set_data(self, data: Any) -> None:
        self.data = data
        self._update_buttons()

    def reset_entries(self) -> None:
        """The tutorial's three optimizers at lr 1e-3 (those that are installed)."""
        if self.plugins is None:
            return
        self.drafts = [EntryDraft(n) for n in DEFAULT_OPTIMIZERS if n in self.plugins.optimizers]
        missing = [n for n in DEFAULT_OPTIMIZERS if n not in self.plugins.optimizers]
        if not self.drafts and self.plugins.optimizers:
            self.drafts = [EntryDraft(next(iter(self.plugins.optimizers)))]
        self._fill_list()
        if missing:
            self.show_status(
                "Not installed, so left out: "
                + ", ".join(missing)
                + ". Add any installed optimizer with Add."
            )
        else:
            self.show_status(
                "Ready: the tutorial's SGD, Adam and RMSProp at lr 1e-3. Press Start race."
            )

    def add_entry(self) -> None:
        row = self.entry_list.currentRow()
        if 0 <= row < len(self.drafts):
            source = self.drafts[row]
            self.drafts.append(EntryDraft(source.optimizer, source.lr, dict(source.params)))
        elif self.plugins is not None and self.plugins.optimizers:
            self.drafts.append(EntryDraft(next(iter(self.plugins.optimizers))))
        self._fill_list(select=len(self.drafts) - 1)

    def remove_entry(self) -> None:
        row = self.entry_list.currentRow()
        if 0 <= row < len(self.drafts):
            del self.drafts[row]
            self._fill_list(select=min(row, len(self.drafts) - 1))

    def _label(self, draft: EntryDraft) -> str:
        try:
            return describe_entry(
                RaceEntry(draft.optimizer, self._parse_params(draft), float(draft.lr)), self.plugins
            )
        except (ParamError, ValueError):
            return f"{draft.optimizer} (check the settings)"

    def _fill_list(self, select: int = 0) -> None:
        self.entry_list.blockSignals(True)
        self.entry_list.clear()
        for draft in self.drafts:
            self.entry_list.addItem(self._label(draft))
        self.entry_list.blockSignals(False)
        if self.drafts:
            self.entry_list.setCurrentRow(max(0, select))
            self._load_editor(self.entry_list.currentRow())
        self._update_buttons()

    def _load_editor(self, row: int) -> None:
        if not 0 <= row < len(self.drafts):
            return
        draft = self.drafts[row]
        self._loading_editor = True
        try:
            self.optimizer_combo.setCurrentIndex(self.optimizer_combo.findData(draft.optimizer))
            self.lr_edit.setText(draft.lr)
            spec = self.plugins.optimizer(draft.optimizer)
            self.param_form.setTitle(f"{spec.label} hyperparameters")
            self.param_form.set_params(spec.params, draft.params)
        finally:
            self._loading_editor = False

    def _optimizer_changed(self, *_args) -> None:
        row = self.entry_list.currentRow()
        if self._loading_editor or not 0 <= row < len(self.drafts):
            return
        name = self.optimizer_combo.currentData()
        self.drafts[row] = EntryDraft(name, self.lr_edit.text())
        self._load_editor(row)
        self.entry_list.item(row).setText(self._label(self.drafts[row]))

    def _store_editor(self, *_args) -> None:
        row = self.entry_list.currentRow()
        if self._loading_editor or not 0 <= row < len(self.drafts):
            return
        draft = self.drafts[row]
        draft.lr = self.lr_edit.text()
        draft.params = self.param_form.raw_values()
        self.entry_list.item(row).setText(self._label(draft))

    def _parse_params(self, draft: EntryDraft) -> dict[str, Any]:
        spec = self.plugins.optimizer(draft.optimizer)
        values = {}
        for name, raw in draft.params.items():
            param = spec.param(name)
            if isinstance(raw, str):
                values[name] = param.parse(raw) if raw.strip() else param.default
            else:
                values[name] = param.coerce(raw)
        return values

    def entries(self) -> list[RaceEntry]:
        """The competitors, parsed; ``ConfigError`` names the first bad one."""
        entries = []
        for number, draft in enumerate(self.drafts, start=1):
            try:
                lr = float(draft.lr)
                params = self._parse_params(draft)
            except ValueError as exc:  # ParamError is a ValueError too
                what = (
                    str(exc)
                    if isinstance(exc, ParamError)
                    else f"learning rate {draft.lr!r} is not a number"
                )
                raise ConfigError(f"competitor {number} ({draft.optimizer}): {what}") from None
            entries.append(RaceEntry(draft.optimizer, params, lr))
        return entries

    def base_config(self) -> TrainConfig:
        seed_text = self.seed_edit.text().strip()
        try:
            seed = int(seed_text) if seed_text else None
        except ValueError:
            raise ConfigError(
                f"seed {seed_text!r} is not a whole number; leave it empty for a random one"
            ) from None
        return TrainConfig(
            epochs=self.epochs_spin.value(),
            batch_size=self.batch_spin.value(),
            seed=seed,
            shuffle=self.shuffle_check.isChecked(),
        ).validate()

    # ----- running -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.job is not None

    def set_blocked(self, reason: str) -> None:
        """Forbid starting (e.g. ``"training is running"``); empty allows it again."""
        self.blocked_reason = reason
        self._update_buttons()

    def _update_buttons(self) -> None:
        running = self.running
        ready = (
            self.data is not None
            and self.plugins is not None
            and bool(self.drafts)
            and not self.blocked_reason
        )
        self.start_button.setEnabled(not running and ready)
        self.start_button.setToolTip(
            "Load the dataset first"
            if self.data is None
            else f"Not now: {self.blocked_reason}"
            if self.blocked_reason
            else "Train every competitor from the same initial weights on the same batches"
        )
        self.stop_button.setEnabled(running)
        for widget in (
            self.add_button,
            self.remove_button,
            self.defaults_button,
            self.entry_list,
            self.optimizer_combo,
            self.lr_edit,
            self.param_form,
            self.epochs_spin,
            self.batch_spin,
            self.seed_edit,
            self.shuffle_check,
        ):
            widget.setEnabled(not running)
        self.remove_button.setEnabled(not running and len(self.drafts) > 1)

    def show_status(self, text: str) -> None:
        self.status.setText(text)
        self.message.emit(text)

    def start(self) -> bool:
        """Build the race (errors shown, nothing started) and run it in a worker thread."""
        if self.running or self.data is None or self.plugins is None:
            return False
        try:
            race = Race(self.entries(), self.data, self.plugins, self.base_config())
        except (ConfigError, ParamError) as exc:
            self.show_status(f"Cannot start: {exc}")
            return False
        except Exception as exc:  # noqa: BLE001 - e.g. PluginFailure from a factory
            self.show_status(f"Cannot start: {type(exc).__name__}: {exc}")
            return False
        self.worker = self.adopt(race)
        self.worker.errored.connect(self._on_error)
        self.job = Job(self.worker, self)
        self.job.done.connect(self._on_done)
        self._fill_results()
        self._update_buttons()
        self.show_status(
            f"Racing {len(race.members)} optimizers from the same weights (seed {race.seed})\u2026"
        )
        self.job.start()
        self.pacer.restart()
        self.timer.start()
        self.race_started.emit(race)
        return True

    def adopt(self, race: Race) -> RaceWorker:
        """Make ``race`` this view's race (its members join the run list); return its worker.

        ``start()`` runs the worker in a thread; a test may drive it step by step.
        """
        self.race = race
        self.run_ids = [
            self.runs.add(m.name, m.config, "race", steps_per_epoch=len(m.trainer.train_loader)).id
            for m in race.members
        ]
        self._running_member = None
        self._seen_losses = [0] * len(race.members)
        return RaceWorker(race)

    def stop(self) -> None:
        if self.race is not None and self.running:
            self.race.request_stop()
            self.show_status("Stopping at the next batch\u2026")

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Stop and join the race thread (for closing the app); True when it ended."""
        if self.job is None:
            return True
        if self.race is not None:
            self.race.request_stop()
        return self.job.wait(timeout_ms)

    @Slot(str, str)
    def _on_error(self, message: str, details: str) -> None:
        self.show_status(f"The race failed: {message}")

    @Slot()
    def _on_done(self) -> None:
        self.timer.stop()
        self.job = None  # not running any more, whatever the summary below does
        try:
            self.pull()
            self.worker = None
            self._update_buttons()
            if self.race is not None:
                scored = [
                    (r.test_accuracy, r.name)
                    for r in self.race.results()
                    if r.test_accuracy is not None
                ]
                best = max(scored, key=lambda pair: pair[0], default=None)
                stopped = self.race.stop_requested
                text = "Race stopped." if stopped else "Race finished."
                if best is not None:
                    accuracy, name = best
                    text += f" Best test accuracy: {name}, {accuracy:.1%}."
                if not self.status.text().startswith("The race failed"):
                    self.show_status(text)
        finally:
            self.worker = None
            if self.race is not None:
                self.race_finished.emit(self.race)

    def pull(self) -> None:
        """Move what the worker produced into the run list and the table (timer, GUI thread)."""
        race, worker = self.race, self.worker
        if race is None:
            return
        if self.running:
            self.pacer.frame()
        release_thread_pool()  # after any torch work this thread did: see openmp.py
        for i, member in enumerate(race.members):
            losses = member.trainer.history.batch_losses
            seen = self._seen_losses[i]
            if len(losses) > seen:
                new = losses[seen:]  # a list slice is atomic under the GIL
                self._seen_losses[i] = seen + len(new)
                if self._has_run(i):  # the user may have removed it from the list
                    self.runs.record(self.run_ids[i], batch_losses=new)
        changed = False
        events = worker.events if worker is not None else ()
        while events:
            item = events.popleft()
            changed = True
            if not self._has_run(item.member):
                continue
            if isinstance(item.event, EpochEnd):
                self.runs.record(self.run_ids[item.member], epoch=item.event.as_dict())
            elif isinstance(item.event, RunEnd):
                self.runs.record(self.run_ids[item.member], status=item.event.status)
        if worker is not None and worker.last_batch is not None:
            last = worker.last_batch
            event = last.event
            if last.member != self._running_member:
                self._running_member = last.member
                changed = True
            # The worker only ever stores a BatchEnd there; the check narrows the type.
            if self.running and not race.stop_requested and isinstance(event, BatchEnd):
                self.status.setText(
                    f"Racing: {race.members[last.member].name}, epoch {event.epoch}/"
                    f"{race.members[last.member].config.epochs}, batch {event.batch + 1}/"
                    f"{event.num_batches}"
                )
        if changed:
            self._fill_results()

    def _on_runs_changed(self, kind: str, run: Any) -> None:
        schedule_refresh(self._results_timer, self.runs, self._on_runs_changed)

    def member_status(self, member: int) -> str:
        """Where a competitor stands: running, waiting for its turn, finished or stopped."""
        assert self.race is not None
        m = self.race.members[member]
        done, planned = len(m.trainer.history.epochs), m.config.epochs
        if m.status is not None:
            return f"{m.status}, {done}/{planned} epochs"
        if done >= planned:
            return f"finished, {done}/{planned} epochs"
        if member == self._running_member and not self.race.stop_requested:
            return f"running, epoch {done + 1}/{planned}"
        return f"waiting, {done}/{planned} epochs"

    def _has_run(self, member: int) -> bool:
        run_id = self.run_ids[member]
        return any(r.id == run_id for r in self.runs)

    def _fill_results(self) -> None:
        """One row per competitor still in the run list and shown, under its current name."""
        if self.race is None or not shiboken6.isValid(self.results):
            return
        shown = {run.id: run for run in self.runs.visible()}
        members = [
            (i, result)
            for i, result in enumerate(self.race.results())
            if i < len(self.run_ids) and self.run_ids[i] in shown
        ]
        best = max(
            (r.test_accuracy for _, r in members if r.test_accuracy is not None), default=None
        )
        self.results.setRowCount(len(members))
        dark = is_dark(self)
        for row, (i, result) in enumerate(members):
            seconds = f"{result.seconds:.1f} s" if result.epochs_done else "\u2013"
            cells = [
                shown[self.run_ids[i]].name,
                f"{result.test_accuracy:.1%}" if result.test_accuracy is not None else "\u2013",
                f"{result.test_loss:.4f}" if result.test_loss is not None else "\u2013",
                seconds,
                f"{result.samples_per_second:,.0f}" if result.samples_per_second else "\u2013",
                self.member_status(i),
            ]
            for column, text in enumerate(cells):
                item = table_item(self.results, row, column, text)
                if column:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                if column == 0:
                    item.setData(Qt.ItemDataRole.DecorationRole, run_color(self.run_ids[i], dark))
                font = item.font()
                font.setBold(best is not None and result.test_accuracy == best and column in (0, 1))
                item.setFont(font)
