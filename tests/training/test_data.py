"""Data: torchvision's real loader on tiny IDX files, fallbacks, corrupt files."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import ToTensor

from fmnist_gui.training import data as fdata
from fmnist_gui.training.data import (
    BatchLoader,
    DataError,
    ensure_dataset,
    load_dataset,
    raw_folder,
)
from tests.conftest import make_tiny_fashion_mnist


def test_loads_through_torchvision(tiny_root):
    d = load_dataset(tiny_root, allow_download=False)
    assert d.train.images.shape == (256, 28, 28)
    assert d.train.images.dtype == torch.uint8
    assert d.test.labels.shape == (128,)
    assert d.test.labels.dtype == torch.int64
    reference = datasets.FashionMNIST(str(tiny_root), train=True)
    assert torch.equal(d.train.images, reference.data)


@pytest.mark.parametrize("batch_size", [1, 64, 100, 256])
def test_batches_bit_identical_to_totensor_dataloader(tiny_root, tiny_data, batch_size):
    reference = DataLoader(
        datasets.FashionMNIST(str(tiny_root), train=True, transform=ToTensor()),
        batch_size=batch_size,
    )
    ours = BatchLoader(tiny_data.train, batch_size)
    assert len(ours) == len(reference)
    for (x_ref, y_ref), (x, y) in zip(reference, ours.batches(), strict=True):
        assert x.dtype == x_ref.dtype
        assert x.shape == x_ref.shape
        assert torch.equal(x, x_ref)
        assert torch.equal(y, y_ref)


def test_shuffle_is_seeded_and_replayable(tiny_data):
    g = torch.Generator().manual_seed(3)
    loader = BatchLoader(tiny_data.train, 32, shuffle=True, generator=g)
    state = g.get_state()
    first = [y for _, y in loader.batches(loader.epoch_order())]
    second_epoch = loader.epoch_order()
    g.set_state(state)
    replay = [y for _, y in loader.batches(loader.epoch_order())]
    assert all(torch.equal(a, b) for a, b in zip(first, replay, strict=True))
    assert not torch.equal(second_epoch, torch.arange(256))
    # Starting at batch 3 yields the tail of the same order.
    g.set_state(state)
    tail = [y for _, y in loader.batches(loader.epoch_order(), start=3)]
    assert all(torch.equal(a, b) for a, b in zip(first[3:], tail, strict=True))


def test_copies_from_system_dataset_package(tmp_path):
    system = tmp_path / "system"
    make_tiny_fashion_mnist(tmp_path / "src", gz=True)
    system.mkdir()
    for gz in raw_folder(tmp_path / "src").glob("*.gz"):
        (system / gz.name).write_bytes(gz.read_bytes())
    root = tmp_path / "root"
    ensure_dataset(root, allow_download=False, system_dir=system)
    assert fdata.missing_files(root) == []
    assert len(load_dataset(root, allow_download=False).train) == 256


def test_missing_data_error_names_folder_and_fixes(tmp_path):
    with pytest.raises(DataError) as err:
        ensure_dataset(tmp_path / "empty", allow_download=False, system_dir=tmp_path / "none")
    message = str(err.value)
    assert str(raw_folder(tmp_path / "empty")) in message
    assert "dataset-fashion-mnist" in message
    assert "--data-dir" in message


def test_download_uses_mirror_md5_and_progress(tmp_path, monkeypatch):
    """The chunked download, against a file:// mirror holding the right bytes."""
    from torchvision.datasets import FashionMNIST

    mirror = tmp_path / "mirror"
    make_tiny_fashion_mnist(tmp_path / "src", gz=True)
    mirror.mkdir()
    resources = []
    import hashlib

    for gz in sorted(raw_folder(tmp_path / "src").glob("*.gz")):
        (mirror / gz.name).write_bytes(gz.read_bytes())
        resources.append((gz.name, hashlib.md5(gz.read_bytes()).hexdigest()))
    monkeypatch.setattr(FashionMNIST, "resources", resources)
    seen = []
    fdata.download(
        tmp_path / "root", progress=lambda *a: seen.append(a), mirrors=[mirror.as_uri() + "/"]
    )
    assert fdata.missing_files(tmp_path / "root") == []
    assert {name for name, _, _ in seen} == {name for name, _ in resources}

    # A wrong checksum is refused and leaves nothing behind.
    monkeypatch.setattr(FashionMNIST, "resources", [(resources[0][0], "0" * 32)])
    with pytest.raises(DataError, match="MD5"):
        fdata.download(tmp_path / "other", mirrors=[mirror.as_uri() + "/"])
    assert list(raw_folder(tmp_path / "other").iterdir()) == []


def test_download_can_be_cancelled(tmp_path, monkeypatch):
    from torchvision.datasets import FashionMNIST

    make_tiny_fashion_mnist(tmp_path / "src", gz=True)
    gz = next(raw_folder(tmp_path / "src").glob("*.gz"))
    monkeypatch.setattr(FashionMNIST, "resources", [(gz.name, "unused")])
    with pytest.raises(fdata.DownloadCancelled):
        fdata.download(
            tmp_path / "root", should_cancel=lambda: True, mirrors=[gz.parent.as_uri() + "/"]
        )


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b[:10], "truncated"),
        (lambda b: b"\x00\x00\x09\x99" + b[4:], "not an IDX"),
        (lambda b: b + b"extra", "longer than its header"),
        (lambda b: b"", "truncated"),
    ],
)
def test_corrupt_idx_file_is_named(tiny_root, damage, expected):
    path = raw_folder(tiny_root) / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=expected) as err:
        load_dataset(tiny_root, allow_download=False)
    assert str(path) in str(err.value)


def test_mismatched_counts_are_refused(tiny_root):
    make_tiny_fashion_mnist(tiny_root / "other", n_train=100)
    src = raw_folder(tiny_root / "other") / "train-labels-idx1-ubyte"
    (raw_folder(tiny_root) / "train-labels-idx1-ubyte").write_bytes(src.read_bytes())
    with pytest.raises(DataError, match="256 train images but 100 labels"):
        load_dataset(tiny_root, allow_download=False)


def test_gzip_files_dropped_in_the_raw_folder_are_used(tmp_path):
    make_tiny_fashion_mnist(tmp_path / "root", gz=True)
    assert len(fdata.missing_files(tmp_path / "root")) == 4
    ensure_dataset(tmp_path / "root", allow_download=False, system_dir=tmp_path / "none")
    assert fdata.missing_files(tmp_path / "root") == []
    assert len(load_dataset(tmp_path / "root", allow_download=False).test) == 128


def test_damaged_gz_is_named(tmp_path):
    make_tiny_fashion_mnist(tmp_path / "root", gz=True)
    gz = raw_folder(tmp_path / "root") / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:200])
    with pytest.raises(DataError, match="is damaged") as err:
        ensure_dataset(tmp_path / "root", allow_download=False, system_dir=tmp_path / "none")
    assert str(gz) in str(err.value)


def test_idx_file_with_no_items_is_refused(tiny_root):
    import numpy as np

    from tests.conftest import write_idx

    write_idx(raw_folder(tiny_root) / "t10k-labels-idx1-ubyte", np.zeros(0))
    with pytest.raises(DataError, match="holds no items"):
        load_dataset(tiny_root, allow_download=False)


def test_one_gz_dropped_in_beside_three_raw_files_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("FMNIST_GUI_SYSTEM_DATASET", str(tmp_path / "no-package"))
    root = make_tiny_fashion_mnist(tmp_path / "root")
    raw = raw_folder(root)
    make_tiny_fashion_mnist(tmp_path / "gz", gz=True)
    name = "t10k-labels-idx1-ubyte"
    (raw / name).unlink()
    (raw / f"{name}.gz").write_bytes((raw_folder(tmp_path / "gz") / f"{name}.gz").read_bytes())
    data = load_dataset(root, allow_download=False)
    assert (raw / name).is_file()
    assert len(data.test) == 128


def test_a_data_file_replaced_by_a_folder_is_named(tmp_path):
    root = make_tiny_fashion_mnist(tmp_path / "root")
    target = raw_folder(root) / "train-labels-idx1-ubyte"
    target.unlink()
    target.mkdir()
    with pytest.raises(DataError, match="is a folder, not the data file") as err:
        load_dataset(root, allow_download=False)
    assert str(target) in str(err.value)


def test_a_partly_missing_dataset_names_the_missing_files(tmp_path, monkeypatch):
    monkeypatch.setenv("FMNIST_GUI_SYSTEM_DATASET", str(tmp_path / "no-package"))
    root = make_tiny_fashion_mnist(tmp_path / "root")
    (raw_folder(root) / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match="lacks t10k-images-idx3-ubyte in"):
        load_dataset(root, allow_download=False)


def test_second_load_reads_the_cache_without_torchvision(tiny_root):
    first = load_dataset(tiny_root, allow_download=False)
    assert fdata.split_cache_file(tiny_root, True).is_file()
    assert fdata.split_cache_file(tiny_root, False).is_file()
    # A fresh interpreter, as the app's next start: same tensors, torchvision never imported.
    script = (
        "import sys, torch\n"
        "from fmnist_gui.training.data import load_dataset\n"
        f"d = load_dataset({str(tiny_root)!r}, allow_download=False)\n"
        "torch.save({'train': d.train.images, 'labels': d.test.labels}, sys.argv[1])\n"
        "print('torchvision' in sys.modules)\n"
    )
    out = tiny_root / "second.pt"
    done = subprocess.run(
        [sys.executable, "-c", script, str(out)], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"
    second = torch.load(out, weights_only=True)
    assert torch.equal(second["train"], first.train.images)
    assert torch.equal(second["labels"], first.test.labels)


def test_cache_is_remade_when_a_raw_file_changes(tiny_root):
    before = load_dataset(tiny_root, allow_download=False)
    # Same size, other content: the labels of another tiny set, written later.
    make_tiny_fashion_mnist(tiny_root / "other", seed=7)
    src = raw_folder(tiny_root / "other") / "train-labels-idx1-ubyte"
    target = raw_folder(tiny_root) / "train-labels-idx1-ubyte"
    target.write_bytes(src.read_bytes())
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    reloaded = load_dataset(tiny_root, allow_download=False)
    assert not torch.equal(reloaded.train.labels, before.train.labels)
    assert torch.equal(reloaded.train.labels, datasets.FashionMNIST(str(tiny_root)).targets)


def test_a_damaged_cache_is_ignored_and_rewritten(tiny_root):
    reference = load_dataset(tiny_root, allow_download=False)
    cache = fdata.split_cache_file(tiny_root, True)
    cache.write_bytes(b"not a torch file")
    again = load_dataset(tiny_root, allow_download=False)
    assert torch.equal(again.train.images, reference.train.images)
    assert torch.load(cache, weights_only=True)["images"].shape == (256, 28, 28)
