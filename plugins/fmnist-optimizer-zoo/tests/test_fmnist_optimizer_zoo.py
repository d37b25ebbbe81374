"""The zoo as a plugin author tests it: derived schemas, the app's self-test, training, resume."""

from __future__ import annotations

import enum
from pathlib import Path

import fmnist_optimizer_zoo
import pytest
import torch
from fmnist_optimizer_zoo import table
from fmnist_optimizer_zoo.derive import docstring_args, spec_for
from pytorch_optimizer import get_supported_optimizers

from fmnist_gui import checkpoint as ckpt
from fmnist_gui.plugins.selftest import check_optimizer
from fmnist_gui.training.config import TrainConfig
from fmnist_gui.training.data import FashionMNISTData, Split, load_dataset
from fmnist_gui.training.driver import RunDriver
from fmnist_gui.training.events import BatchEnd, EpochEnd
from fmnist_gui.training.trainer import Trainer

NOT_HYPERPARAMETERS = {"lr", "params", "foreach", "fused", "capturable", "differentiable"}


# ----- derived specs -----------------------------------------------------------------
def test_cached_specs_equal_the_derived_ones(tmp_path, monkeypatch):
    from fmnist_optimizer_zoo import cache

    monkeypatch.setenv("FMNIST_GUI_HOME", str(tmp_path))
    derived = fmnist_optimizer_zoo.derive_specs()
    key = cache.cache_key(fmnist_optimizer_zoo.__version__)
    cache.write(key, derived)
    assert cache.read(key) == derived  # names, labels, every Param, the factories
    # Another library version (or other rules) makes another key: derived afresh.
    assert cache.read(key.replace("pytorch-optimizer==", "pytorch-optimizer==0.0.0+")) is None
    cache.cache_file().write_text("{not json", encoding="utf-8")
    assert cache.read(key) is None
    assert fmnist_optimizer_zoo.optimizer_specs() == derived  # and the damaged file is rewritten
    assert cache.read(key) == derived


def test_a_warm_start_does_not_import_the_library(tmp_path):
    import os
    import subprocess
    import sys

    script = (
        "import sys, fmnist_optimizer_zoo as zoo\n"
        "specs = zoo.optimizer_specs()\n"
        "print(len(specs), 'pytorch_optimizer' in sys.modules)\n"
    )
    env = {**os.environ, "FMNIST_GUI_HOME": str(tmp_path)}
    runs = [
        subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(2)
    ]
    assert runs[0][1] == "True"  # the first start derives the specs from the library
    assert runs[1] == [runs[0][0], "False"]  # the next reads them back, without importing it


def test_one_spec_per_library_optimizer_with_prefixed_names():
    specs = fmnist_optimizer_zoo.optimizer_specs()
    assert sorted(s.name for s in specs) == sorted(f"zoo_{n}" for n in get_supported_optimizers())
    assert len(specs) >= 128
    for spec in specs:
        names = {p.name for p in spec.params}
        assert not names & NOT_HYPERPARAMETERS, spec.name
        assert "maximize" not in names, spec.name
        assert spec.label, spec.name
        assert spec.description, spec.name


def test_adam_schema_from_torch_signature(zoo_host):
    spec = zoo_host.optimizer("zoo_adam")
    assert [p.name for p in spec.params] == [
        "betas",
        "eps",
        "weight_decay",
        "amsgrad",
        "decoupled_weight_decay",
    ]
    betas = spec.param("betas")
    assert (betas.kind, betas.default) == ("floats", (0.9, 0.999))
    assert betas.describe_range() == "0 <= betas < 1"
    # torch writes `weight_decay: float = 0`: the annotation makes it a float.
    decay = spec.param("weight_decay")
    assert (decay.kind, decay.default, decay.minimum) == ("float", 0.0, 0)
    assert spec.param("amsgrad").kind == "bool"
    assert spec.label == "Adam"
    assert spec.description.endswith(".")


def test_prodigy_leaves_none_and_infinite_defaults_to_the_library(zoo_host):
    spec = zoo_host.optimizer("zoo_prodigy")
    names = [p.name for p in spec.params]
    assert "beta3" not in names  # None: "derive it from beta2"
    assert "growth_rate" not in names  # inf: "unbounded"
    assert "d_coef" in names
    assert "distance to the optimum" in spec.param("d0").help  # the docstring's Args line


class _Mode(enum.IntEnum):
    A = 1


class Toy(torch.optim.Optimizer):
    """A made-up optimizer. It shows every rule.

    Args:
        params: Parameters to optimize.
        lr: Learning rate.
        beta: Decay of the average,
            continued on a second line.
        decay_rate: A decay whose default is negative.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        beta: float = 0.9,
        decay_rate: float = -0.8,
        steps: int = 3,
        nesterov: bool = False,
        coeffs: tuple = (1.0, 2.0),
        sizes: tuple = (2, 3),
        mode: _Mode = _Mode.A,
        name: str = "x",
        cap: float | None = None,
        foreach: bool | None = None,
        maximize: bool = False,
        **kwargs,
    ):
        super().__init__(params, {"lr": lr})

    def step(self, closure=None):
        return None


def test_derivation_rules_on_a_made_up_optimizer():
    spec = spec_for("toy", Toy)
    assert spec.name == "zoo_toy"
    assert spec.label == "Toy"
    assert spec.description == "A made-up optimizer."
    assert {p.name: p.kind for p in spec.params} == {
        "beta": "float",
        "decay_rate": "float",
        "steps": "int",
        "nesterov": "bool",
        "coeffs": "floats",
    }  # not: lr, ints in a tuple, an IntEnum, a string, None, foreach, maximize, **kwargs
    assert spec.param("beta").describe_range() == "0 <= beta < 1"
    assert spec.param("beta").help == "Decay of the average, continued on a second line."
    # A range the library's own default breaks is dropped, never the default.
    assert spec.param("decay_rate").default == -0.8
    assert spec.param("decay_rate").minimum is None
    assert spec.param("steps").minimum == 0
    assert spec.param("steps").help == "Steps."  # no Args line: the name, as words


def test_docstring_args_reads_torch_style_types():
    doc = """Title.

    Args:
        params (iterable): what to optimize
        lr (float, optional): learning rate
            (default: 1e-3)
    """
    assert docstring_args(doc) == {
        "params": "what to optimize.",
        "lr": "learning rate (default: 1e-3).",
    }


# ----- what the training loop cannot drive: refused with the reason ----------------------
class NeedsClosure(Toy):
    """Re-evaluates the loss."""

    def step(self, closure):
        return closure()


class NeedsHessian(Toy):
    """Uses curvature."""

    def step(self, closure=None, hessian=None):
        return None


class BuiltFromModel(torch.optim.Optimizer):
    """Wants the model."""

    def __init__(self, model, lr: float = 1e-3):
        super().__init__(model.parameters(), {"lr": lr})


class NeedsSize(Toy):
    """Wants the dataset size."""

    def __init__(self, params, num_data: int, lr: float = 1e-3):
        super().__init__(params, lr=lr)


@pytest.mark.parametrize(
    ("cls", "reason"),
    [
        (NeedsClosure, "requires a closure"),
        (NeedsHessian, "create_graph=True"),
        (BuiltFromModel, "first argument is `model`"),
        (NeedsSize, "`num_data`, which has no default"),
    ],
)
def test_refused_by_the_self_test_with_the_reason(cls, reason):
    result = check_optimizer(spec_for("x", cls))
    assert not result.ok
    assert result.reason.startswith("factory raised UnsupportedOptimizerError")
    assert reason in result.reason


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("zoo_lbfgs", "requires a closure"),
        ("zoo_adahessian", "create_graph=True"),
        ("zoo_sophiah", "create_graph=True"),
        ("zoo_muon", "split into groups by role"),
        ("zoo_ranger21", "`num_iterations`"),
        ("zoo_lomo", "first argument is `model`"),
    ],
)
def test_library_optimizers_the_loop_cannot_drive(zoo_host, name, reason):
    assert name not in zoo_host.optimizers
    assert reason in zoo_host.records["optimizer_zoo"].rejected[name]


# ----- the plugin in a host, and the README ---------------------------------------------
def test_plugin_loads_and_offers_most_with_every_refusal_explained(zoo_host):
    record = zoo_host.records["optimizer_zoo"]
    assert record.status == "loaded"
    assert len(record.optimizers) >= 100
    assert len(record.optimizers) + len(record.rejected) == len(get_supported_optimizers())
    assert all(reason.strip() for reason in record.rejected.values())
    for name in ("zoo_lion", "zoo_adan", "zoo_prodigy", "zoo_adabelief", "zoo_lamb"):
        assert name in record.optimizers


def test_readme_table_is_current():
    readme = Path(__file__).resolve().parents[1] / "README.md"  # also when installed
    assert table.main(["--check", "--readme", str(readme)]) == 0, (
        "run python -m fmnist_optimizer_zoo.table --write"
    )


def test_schema_parses_cli_values(zoo_host):
    spec = zoo_host.optimizer("zoo_lion")
    values = spec.parse_assignments(["betas=0.95,0.98", "weight_decay=0.01"])
    assert values == {"betas": (0.95, 0.98), "weight_decay": 0.01}
    assert check_optimizer(spec, values).ok
    with pytest.raises(ValueError, match="out of range"):
        spec.parse_assignments(["betas=0.9,1.5"])


# ----- training -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def subset(real_data_root) -> FashionMNISTData:
    """The first 2,000 training and 1,000 test images of the real Fashion-MNIST."""
    data = load_dataset(real_data_root, allow_download=False)
    return FashionMNISTData(
        train=Split(data.train.images[:2000], data.train.labels[:2000]),
        test=Split(data.test.images[:1000], data.test.labels[:1000]),
    )


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("optimizer", "lr"),
    # Lion wants a 3-10x smaller lr than Adam; Prodigy estimates its own step from lr 1.
    [("zoo_lion", 1e-4), ("zoo_adan", 1e-3), ("zoo_prodigy", 1.0)],
)
def test_one_epoch_on_real_data_reaches_a_sane_accuracy(zoo_host, subset, optimizer, lr):
    config = TrainConfig(epochs=1, lr=lr, optimizer=optimizer, seed=0, device="cpu")
    trainer = Trainer(config, subset, zoo_host)
    events = list(trainer.run())
    assert events[-1].status == "finished"
    epoch = next(e for e in events if isinstance(e, EpochEnd))
    # 32 steps on 2,000 images: chance is 10%, the tutorial's SGD at lr 1e-3 about 30%;
    # these reach 63-70% here.
    assert epoch.test_accuracy > 0.5, epoch


def _losses(trainer: Trainer) -> list[float]:
    return trainer.history.batch_losses


@pytest.fixture
def tiny_data(tmp_path) -> FashionMNISTData:
    """256 synthetic images in torchvision's layout, as the app's own tests make them."""
    import struct

    import numpy as np

    rng = np.random.default_rng(0)
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 256), ("t10k", 128)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 + 2 * c : 4 + 2 * c, 4:24] = 255
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            payload = struct.pack(f">{array.ndim + 1}I", 0x800 | array.ndim, *array.shape)
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(payload + array.tobytes())
    return load_dataset(tmp_path / "data", allow_download=False)


@pytest.mark.parametrize(("optimizer", "lr"), [("zoo_adan", 1e-3), ("zoo_prodigy", 1.0)])
def test_exact_resume_with_a_zoo_optimizer(tmp_path, zoo_host, tiny_data, optimizer, lr):
    """Stop mid-epoch, save, load, continue: the very same losses and weights as one run."""
    config = TrainConfig(epochs=2, batch_size=32, lr=lr, optimizer=optimizer, shuffle=True, seed=3)
    reference = Trainer(config, tiny_data, zoo_host)
    assert list(reference.run())[-1].status == "finished"

    first = Trainer(config, tiny_data, zoo_host)
    driver = RunDriver(first)
    for event in driver.run():
        if isinstance(event, BatchEnd) and event.step == 11:  # 3 batches into epoch 2
            driver.request_stop()
    assert first.global_step == 11
    path = tmp_path / "ck.pt"
    ckpt.save_checkpoint(path, first.state_dict())
    torch.manual_seed(999)  # whatever happens between save and load must not matter
    resumed = ckpt.load_trainer(path, tiny_data, zoo_host)
    assert resumed.optimizer_params == first.optimizer_params
    assert list(resumed.run())[-1].status == "finished"

    assert _losses(resumed) == _losses(reference)  # exact floats
    for key, value in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
