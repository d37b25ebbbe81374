"""Archives are checked before torch.load: bombs, forged sizes and flipped bytes are refused."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import pytest
import torch

from fmnist_gui import checkpoint as ckpt
from fmnist_gui.checkpoint.archive import ArchiveError, verify_archive
from fmnist_gui.training.config import TrainConfig
from fmnist_gui.training.trainer import Trainer
from tests.conftest import run_stopping_after

CAP = ckpt.MAX_CHECKPOINT_BYTES


@pytest.fixture
def saved(tmp_path, tiny_data, plugins) -> Path:
    config = TrainConfig(epochs=1, batch_size=32, lr=0.01, seed=3, optimizer="adam")
    trainer = Trainer(config, tiny_data, plugins)
    run_stopping_after(trainer, 2)
    path = tmp_path / "good.pt"
    ckpt.save_checkpoint(path, trainer.state_dict())
    return path


def _rezip(src: Path, dst: Path, compression: int, *, garble: bool = False) -> Path:
    """The same records as ``src``, written with ``compression`` (deflate: a bomb's way)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
    if garble:
        # Overwrite the deflated streams' middles: inflating them would fail,
        # so a refusal that names the compression proves nothing was inflated.
        data = bytearray(dst.read_bytes())
        with zipfile.ZipFile(dst) as z:
            for info in z.infolist():
                if info.compress_size > 64:
                    start = info.header_offset + 30 + len(info.filename.encode()) + 16
                    data[start : start + 32] = b"\xff" * 32
        dst.write_bytes(bytes(data))
    return dst


def test_deflated_records_are_refused_without_inflating_them(saved, tmp_path):
    bomb = _rezip(saved, tmp_path / "bomb.pt", zipfile.ZIP_DEFLATED, garble=True)
    assert bomb.stat().st_size < saved.stat().st_size  # compressed: what a bomb relies on
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.read_checkpoint(bomb)
    message = str(info.value)
    assert str(bomb) in message
    assert "compressed record" in message
    # Not a decompression error: the garbled streams were never inflated.
    assert "decompress" not in message.lower()
    assert "invalid" not in message.lower()


def test_a_directory_declaring_more_than_the_cap_is_refused(saved, tmp_path):
    """A stored record whose central-directory sizes were forged to 3 GiB."""
    forged = tmp_path / "forged.pt"
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as z:
        biggest = max(z.infolist(), key=lambda i: i.file_size)
    # Find this record's central directory entry and set both sizes to 3 GiB.
    name = biggest.filename.encode()
    at = 0
    while True:
        at = data.find(b"PK\x01\x02", at)
        assert at >= 0, "record not found in the central directory"
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if bytes(data[at + 46 : at + 46 + name_len]) == name:
            break
        at += 4
    struct.pack_into("<II", data, at + 20, 3 << 30, 3 << 30)
    forged.write_bytes(bytes(data))
    assert forged.stat().st_size == saved.stat().st_size
    with pytest.raises(ckpt.CheckpointError, match="over the 256 MiB limit"):
        ckpt.read_checkpoint(forged)


@pytest.mark.parametrize("where", [0.35, 0.5, 0.8])
def test_flipped_bytes_inside_a_weight_are_refused(saved, tmp_path, where):
    good = torch.load(saved, weights_only=True)
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as z:
        record = max(z.infolist(), key=lambda i: i.file_size)  # the 784x512 weight
    start = record.header_offset + 30 + len(record.filename.encode()) + len(record.extra)
    first = start + int(record.file_size * where)
    for i in range(64):  # 64 flipped bytes, as the tester did
        data[first + i] ^= 0x5A
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(bytes(data))
    # Without the check the damage would load silently: the tensors differ.
    raw = torch.load(damaged, weights_only=True)
    assert not all(torch.equal(raw["model"][k], good["model"][k]) for k in good["model"]), (
        "the flip missed the weights"
    )
    with pytest.raises(ckpt.CheckpointError, match="CRC-32") as info:
        ckpt.read_checkpoint(damaged)
    assert str(damaged) in str(info.value)
    assert "another copy" in str(info.value)


def test_cut_and_empty_archives_are_named(saved, tmp_path):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    with pytest.raises(ckpt.CheckpointError, match="truncated or damaged"):
        ckpt.read_checkpoint(cut)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w"):
        pass
    with pytest.raises(ArchiveError, match="empty archive"):
        verify_archive(empty, CAP)


def test_an_intact_checkpoint_passes_and_loads(saved):
    verify_archive(saved, CAP)
    assert ckpt.read_checkpoint(saved)["position"]["global_step"] == 2
