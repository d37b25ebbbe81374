"""Checkpoint files: what they hold, hostile and broken files, save errors, weights, autosave."""

from __future__ import annotations

import errno
import os
import pickle
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch

from fmnist_gui import checkpoint as ckpt
from fmnist_gui.plugins.host import get_plugin_manager
from fmnist_gui.system import fileio
from fmnist_gui.training.config import TrainConfig
from fmnist_gui.training.data import load_dataset
from fmnist_gui.training.trainer import Trainer
from tests.conftest import make_tiny_fashion_mnist, run_stopping_after
from tests.support import tutorial_reference as tut
from tests.support.plugin_fixtures import good_optimizer_source, write_plugin


def trained(data, plugins, *, batches=3, **settings) -> Trainer:
    """A Trainer stopped after ``batches`` batches of its first epoch."""
    config = TrainConfig(**{"epochs": 2, "batch_size": 32, "lr": 0.01, "seed": 5, **settings})
    trainer = Trainer(config, data, plugins)
    run_stopping_after(trainer, batches)
    return trainer


@pytest.fixture
def saved(tmp_path, tiny_data, plugins):
    """A real Adam checkpoint, stopped mid-epoch, and the trainer that wrote it."""
    trainer = trained(tiny_data, plugins, optimizer="adam", shuffle=True)
    path = tmp_path / "ck.pt"
    ckpt.save_checkpoint(path, trainer.state_dict())
    return path, trainer


def rewrite(path: Path, change) -> Path:
    """Load a checkpoint, let ``change`` edit the dict, and save it back raw (no checks)."""
    obj = torch.load(path, weights_only=True)
    change(obj)
    out = path.with_name("edited.pt")
    torch.save(obj, out)
    return out


# ----- format -------------------------------------------------------------------------
PRIMITIVES = (int, float, str, bool, type(None))


def leaves(value, where=""):
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, (str, int)), f"{where}: key {k!r}"
            yield from leaves(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from leaves(v, f"{where}[{i}]")
    else:
        yield where, value


def test_file_holds_only_tensors_and_primitives_and_everything_listed(saved):
    path, trainer = saved
    obj = torch.load(path, weights_only=True, map_location="cpu")  # no allowlist needed
    for where, value in leaves(obj):
        assert isinstance(value, (torch.Tensor, *PRIMITIVES)), (where, type(value))

    assert obj["format"] == ckpt.FORMAT
    assert obj["format_version"] == ckpt.FORMAT_VERSION
    assert isinstance(obj["app_version"], str)
    assert obj["app_version"]
    assert set(obj["model"]) == set(tut.NeuralNetwork().state_dict())
    assert obj["optimizer"]["name"] == "adam"
    assert obj["optimizer"]["plugin"] == trainer.optimizer_spec.plugin != ""
    assert obj["optimizer"]["params"]["betas"] == [0.9, 0.999]
    assert obj["optimizer"]["state_dict"]["state"]  # Adam's moments are there
    assert obj["loss"]["name"] == "cross_entropy"
    assert obj["config"] == trainer.config.to_dict()
    position = obj["position"]
    assert (position["epochs_done"], position["batch_in_epoch"], position["global_step"]) == (
        0,
        3,
        3,
    )
    assert position["seed"] == 5
    assert type(position["epoch_loss_sum"]) is float
    assert position["epoch_loss_sum"] == trainer.epoch_loss_sum
    for key in ("torch_cpu", "shuffle"):
        assert obj["rng"][key].dtype == torch.uint8
    assert obj["rng"]["cuda"] == []  # CPU training
    assert obj["history"]["batch_losses"].dtype == torch.float64
    assert obj["history"]["batch_losses"].tolist() == trainer.history.batch_losses
    assert obj["torch_threads"] == torch.get_num_threads()
    assert obj["plugins"] == trainer.plugin_versions
    assert set(obj["plugins"]) == {
        trainer.optimizer_spec.plugin,
        trainer.loss_spec.plugin,
        trainer.scheduler_spec.plugin,
    }
    assert obj["scheduler"]["name"] == "constant"
    assert obj["history"]["lrs"].tolist() == trainer.history.lrs


def test_snapshot_is_a_copy_training_can_go_on(tiny_data, plugins):
    trainer = trained(tiny_data, plugins)
    state = trainer.state_dict()
    before = state["model"]["linear_relu_stack.0.weight"].clone()
    list(trainer.run())  # trains further, in place
    assert torch.equal(state["model"]["linear_relu_stack.0.weight"], before)
    assert not torch.equal(trainer.model.state_dict()["linear_relu_stack.0.weight"], before)


def test_a_snapshot_that_would_not_load_back_is_never_written(tmp_path, tiny_data, plugins):
    trainer = trained(tiny_data, plugins)
    (tmp_path / "out").mkdir()
    path = tmp_path / "out" / "ck.pt"
    ckpt.save_checkpoint(path, trainer.state_dict())
    old = path.read_bytes()
    state = trainer.state_dict()
    # What a careless optimizer plugin might keep in its state.
    state["optimizer"]["state_dict"]["state"][0] = {"helper": Path("x")}
    with pytest.raises(ckpt.CheckpointError, match="would not load back") as info:
        ckpt.save_checkpoint(path, state)
    assert "pathlib" in str(info.value)
    assert str(path) in str(info.value)
    assert path.read_bytes() == old
    assert os.listdir(path.parent) == ["ck.pt"]  # no temp file left


# ----- hostile and broken files ---------------------------------------------------------
class CreatesFile:
    """Unpickling this calls os.mkdir(target): a stand-in for arbitrary code."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


@pytest.mark.parametrize("how", ["torch.save", "pickle protocol 2", "pickle protocol 4"])
def test_a_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path, how):
    sentinel = tmp_path / "pwned"
    payload = {"format": ckpt.FORMAT, "model": CreatesFile(sentinel)}
    path = tmp_path / "evil.pt"
    if how == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=int(how[-1])))
    # The payload is live: an unsafe load really would create the file.
    with open(path, "rb") as f:
        if how == "torch.save":
            torch.load(f, weights_only=False)
        else:
            pickle.load(f)
    assert sentinel.exists()
    sentinel.rmdir()

    for load in (ckpt.read_checkpoint, ckpt.load_weights):
        with pytest.raises(ckpt.CheckpointError) as info:
            load(path)
        message = str(info.value)
        assert message.startswith(f"{path}: refused: it ")
        assert "could" in message
        assert "code" in message
        assert "none of it was loaded" in message
        if how != "pickle protocol 4":  # torch stops earlier, at the protocol's FRAME opcode
            assert "the Python object posix.mkdir" in message  # os.mkdir, as pickle names it
        assert not sentinel.exists()


def broken_files(tmp_path: Path, good: bytes) -> dict[str, tuple[Path, str]]:
    files = {
        "empty": (b"", "is empty"),
        "truncated half": (good[: len(good) // 2], "truncated or damaged"),
        "truncated near end": (good[:-10], "truncated or damaged"),
        "random bytes": (bytes(range(256)) * 40, "not a PyTorch file"),
        "png renamed": (b"\x89PNG\r\n\x1a\n" + os.urandom(300), "is a PNG image"),
        "text": (b"hello, I am not a checkpoint\n", "not a PyTorch file"),
    }
    out = {}
    for name, (content, words) in files.items():
        path = tmp_path / f"{name.replace(' ', '_')}.pt"
        path.write_bytes(content)
        out[name] = (path, words)
    return out


def test_broken_files_get_a_clear_message_naming_file_and_reason(saved, tmp_path):
    path, _ = saved
    for name, (bad, words) in broken_files(tmp_path, path.read_bytes()).items():
        for load in (ckpt.read_checkpoint, ckpt.load_weights):
            with pytest.raises(ckpt.CheckpointError) as info:
                load(bad)
            assert str(info.value).startswith(f"{bad}: "), name
            assert words in str(info.value), (name, str(info.value))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.read_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(ckpt.CheckpointError, match="is a folder"):
        ckpt.read_checkpoint(tmp_path)


def test_newer_format_version_is_refused_with_the_fix(saved):
    path, _ = saved
    newer = rewrite(
        path, lambda o: o.update(format_version=ckpt.FORMAT_VERSION + 1, app_version="9.0")
    )
    for load in (ckpt.read_checkpoint, ckpt.load_weights):
        with pytest.raises(ckpt.CheckpointError) as info:
            load(newer)
        assert "newer fmnist-gui (9.0, checkpoint format 2)" in str(info.value)
        assert "update fmnist-gui" in str(info.value)


def test_wrong_architecture_names_the_layer(saved, tiny_data, plugins):
    path, _ = saved

    def widen(o):
        o["model"]["linear_relu_stack.0.weight"] = torch.zeros(256, 784)

    wrong = rewrite(path, widen)
    for load in (ckpt.read_checkpoint, ckpt.load_weights):
        with pytest.raises(ckpt.CheckpointError) as info:
            load(wrong)
        assert "linear_relu_stack.0.weight is 256x784" in str(info.value)
        assert "needs 512x784" in str(info.value)

    renamed = rewrite(
        path,
        lambda o: o["model"].update({"fc.weight": o["model"].pop("linear_relu_stack.4.weight")}),
    )
    with pytest.raises(
        ckpt.CheckpointError, match="missing linear_relu_stack.4.weight; unexpected fc.weight"
    ):
        ckpt.read_checkpoint(renamed)


def test_damaged_structure_is_named(saved):
    path, _ = saved
    damaged = rewrite(path, lambda o: o["position"].pop("seed"))
    with pytest.raises(ckpt.CheckpointError, match="'position.seed' is missing"):
        ckpt.read_checkpoint(damaged)
    damaged = rewrite(path, lambda o: o["rng"].update(shuffle=torch.zeros(3)))
    with pytest.raises(ckpt.CheckpointError, match="'rng.shuffle' is not a random-generator"):
        ckpt.read_checkpoint(damaged)
    # A missing setting is not filled in with a default: that would break exact resume.
    damaged = rewrite(path, lambda o: o["config"].pop("batch_size"))
    with pytest.raises(ckpt.CheckpointError, match="'config.batch_size' is missing"):
        ckpt.read_checkpoint(damaged)
    damaged = rewrite(path, lambda o: o["config"].update(epochs="x"))
    with pytest.raises(ckpt.CheckpointError, match="'config' is not a valid training config"):
        ckpt.read_checkpoint(damaged)


def _shape_paths(shape, prefix=""):
    """Every key of a TypedDict shape, nested ones as "position.seed": (path, required)."""
    for key, hint in typing.get_type_hints(shape).items():
        yield prefix + key, key in shape.__required_keys__
        if typing.is_typeddict(hint):
            yield from _shape_paths(hint, f"{prefix}{key}.")


def test_the_saved_dict_is_the_declared_shape_and_every_part_is_checked(saved):
    path, _ = saved
    obj = torch.load(path, weights_only=True)
    declared = dict(_shape_paths(ckpt.CheckpointFile))
    nested = {where.partition(".")[0] for where in declared if "." in where}
    saved_paths = set(obj) | {f"{k}.{sub}" for k in nested for sub in obj[k]}
    assert saved_paths == set(declared)  # the trainer saves exactly what is declared
    for where, required in declared.items():
        if where in ("format", "format_version") or not required:
            continue  # refused by their own checks first; optional ones may be absent
        damaged = {k: dict(v) if isinstance(v, dict) else v for k, v in obj.items()}
        parent, _, key = where.rpartition(".")
        (damaged[parent] if parent else damaged).pop(key)
        with pytest.raises(ckpt.CheckpointError, match=f"'{re.escape(where)}' is missing"):
            ckpt.check_checkpoint(path, damaged)


def test_plugin_not_installed_names_it_and_weights_still_load(tmp_path, tiny_data):
    plugin_dir = tmp_path / "plugins"
    write_plugin(plugin_dir, "fmnist_adagrad", good_optimizer_source("my_adagrad"))
    with_plugin = get_plugin_manager([plugin_dir])
    trainer = trained(tiny_data, with_plugin, optimizer="my_adagrad")
    path = tmp_path / "ck.pt"
    ckpt.save_checkpoint(path, trainer.state_dict())

    without = get_plugin_manager([tmp_path / "empty"])
    with pytest.raises(ckpt.MissingPluginError) as info:
        ckpt.load_trainer(path, tiny_data, without)
    error = info.value
    assert (error.kind, error.name, error.plugin, error.version) == (
        "optimizer",
        "my_adagrad",
        "fmnist_adagrad",
        "2.5",
    )
    assert "optimizer 'my_adagrad' from plugin 'fmnist_adagrad' 2.5" in str(error)
    assert "not installed" in str(error)
    assert "load only its model weights" in str(error)

    weights = ckpt.load_weights(path)  # the offered way out
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(weights[key], value)
    fresh = Trainer(TrainConfig(epochs=1, seed=1), tiny_data, without, initial_state=weights)
    assert torch.equal(
        fresh.model.linear_relu_stack[0].weight, trainer.model.linear_relu_stack[0].weight
    )
    # With the plugin back, the whole training loads.
    assert ckpt.load_trainer(path, tiny_data, with_plugin).global_step == 3


def test_file_over_the_size_cap_is_refused_before_loading(saved, tmp_path):
    path, _ = saved
    with pytest.raises(ckpt.CheckpointError, match=r"over the 1 MiB limit"):
        ckpt.read_checkpoint(path, max_bytes=2**20)
    huge = tmp_path / "huge.pt"
    with open(huge, "wb") as f:  # sparse: takes no disk space
        f.truncate(ckpt.MAX_CHECKPOINT_BYTES + 1)
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.read_checkpoint(huge)
    assert str(info.value).startswith(f"{huge}: is 256.0 MiB, over the 256 MiB limit")


def test_weights_file_is_not_mistaken_for_a_training(tmp_path):
    path = tmp_path / "model_weights.pth"
    torch.save(tut.NeuralNetwork().state_dict(), path)
    with pytest.raises(ckpt.CheckpointError, match="holds only model weights"):
        ckpt.read_checkpoint(path)


def test_failed_load_changes_nothing(saved, tmp_path):
    path, _ = saved
    other = load_dataset(
        make_tiny_fashion_mnist(tmp_path / "other", n_train=300), allow_download=False
    )
    plugins = get_plugin_manager([tmp_path / "none"])
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    threads = torch.get_num_threads()
    with pytest.raises(
        ckpt.CheckpointError,
        match="trained on 256 training and 128 test images, but the data here has 300 and 128",
    ):
        ckpt.load_trainer(path, other, plugins)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.get_num_threads() == threads


# ----- save errors ----------------------------------------------------------------------
def test_saving_onto_a_folder_says_so(tmp_path, tiny_data, plugins):
    state = trained(tiny_data, plugins).state_dict()
    folder = tmp_path / "ck.pt"
    folder.mkdir()
    with pytest.raises(ckpt.CheckpointError, match="is a folder; choose a file name"):
        ckpt.save_checkpoint(folder, state)
    assert folder.is_dir()
    assert not any(folder.iterdir())


def test_read_only_folder_leaves_the_old_file(tmp_path, tiny_data, plugins, monkeypatch):
    trainer = trained(tiny_data, plugins)
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "ck.pt"
    ckpt.save_checkpoint(path, trainer.state_dict())
    old = path.read_bytes()
    list(trainer.run())
    if os.geteuid() == 0:
        # root writes anywhere: refuse the temp file the way a read-only folder would.
        def refuse(*args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied")

        monkeypatch.setattr(fileio.tempfile, "mkstemp", refuse)
    else:
        folder.chmod(0o555)
    try:
        with pytest.raises(ckpt.CheckpointError) as info:
            ckpt.save_checkpoint(path, trainer.state_dict())
    finally:
        folder.chmod(0o755)
    assert str(info.value) == (
        f"{path}: cannot be saved: no permission to write in {folder}; "
        "choose another folder; any previous file there is unchanged"
    )
    assert path.read_bytes() == old
    assert ckpt.read_checkpoint(path)["position"]["global_step"] == 3


def test_full_disk_leaves_the_old_file_and_no_temp(tmp_path, tiny_data, plugins, monkeypatch):
    trainer = trained(tiny_data, plugins)
    (tmp_path / "out").mkdir()
    path = tmp_path / "out" / "ck.pt"
    ckpt.save_checkpoint(path, trainer.state_dict())
    old = path.read_bytes()
    list(trainer.run())

    real_fdopen = os.fdopen

    class FillsUp:
        """A file whose disk fills up after the first 100 kB (the real write is done)."""

        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(bytes(data)[:100_000])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    monkeypatch.setattr(fileio.os, "fdopen", lambda fd, mode: FillsUp(real_fdopen(fd, mode)))
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.save_checkpoint(path, trainer.state_dict())
    assert "the disk is full; free some space or choose another disk" in str(info.value)
    assert path.read_bytes() == old
    assert os.listdir(path.parent) == ["ck.pt"]


# ----- the tutorial's weights format -----------------------------------------------------
def test_export_weights_loads_in_the_tutorials_own_code(tmp_path, tiny_data, plugins):
    trainer = trained(tiny_data, plugins)
    path = tmp_path / "model_weights.pth"
    ckpt.export_weights(path, trainer.model.state_dict())

    model = tut.NeuralNetwork()
    model.load_state_dict(torch.load(path, weights_only=True))  # the tutorial's next chapter
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
    assert set(torch.load(path, weights_only=True)) == set(model.state_dict())


def test_import_weights_from_the_tutorials_format(tmp_path, tiny_data, plugins):
    torch.manual_seed(42)
    model = tut.NeuralNetwork()
    path = tmp_path / "model_weights.pth"
    torch.save(model.state_dict(), path)  # exactly as the tutorial saves
    weights = ckpt.load_weights(path)
    trainer = Trainer(TrainConfig(epochs=1, seed=0), tiny_data, plugins, initial_state=weights)
    for key, value in model.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[key], value)

    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ckpt.CheckpointError, match="different network"):
        ckpt.load_weights(tmp_path / "other.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ckpt.CheckpointError, match="holds a list, not model weights"):
        ckpt.load_weights(tmp_path / "list.pth")


# ----- autosave and crash recovery --------------------------------------------------------
def dead_pid() -> int:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(child.stdout)


@pytest.mark.skipif(os.name != "posix", reason="process liveness check is POSIX-only")
def test_autosave_and_recovery_after_a_crash(tiny_data, plugins):
    trainer = trained(tiny_data, plugins)
    mine = ckpt.autosave(trainer.state_dict(), extra={"origin": "/somewhere/run.pt"})
    assert mine == ckpt.autosave_dir() / f"session-{os.getpid()}.pt"
    assert str(ckpt.autosave_dir()).startswith(os.environ["FMNIST_GUI_HOME"])
    assert ckpt.read_checkpoint(mine)["extra"] == {"origin": "/somewhere/run.pt"}
    assert ckpt.find_recoverable_autosaves() == []  # this session is alive

    # A session that crashed: its autosave and the temp file of a save it never finished.
    pid = dead_pid()
    crashed = ckpt.autosave_path(pid)
    crashed.write_bytes(mine.read_bytes())
    leftover = ckpt.autosave_dir() / f".session-{pid}.pt.abc123.part"
    leftover.write_bytes(b"torn")
    found = ckpt.find_recoverable_autosaves()
    assert [r.path for r in found] == [crashed]
    assert found[0].pid == pid
    assert not leftover.exists()
    recovered = ckpt.load_trainer(found[0].path, tiny_data, plugins)
    assert recovered.global_step == trainer.global_step

    ckpt.discard_autosave(crashed)
    ckpt.discard_autosave()
    assert ckpt.find_recoverable_autosaves() == []
    assert not mine.exists()
