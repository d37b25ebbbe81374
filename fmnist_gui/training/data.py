"""Fashion-MNIST: finding it, checking it, and serving batches from memory.

The files are read by torchvision's own ``FashionMNIST`` class (its tensors are
cached beside the raw files, so later starts skip importing torchvision). Batches are
sliced from the uint8 tensors it returns and converted exactly as the
tutorial's ``ToTensor()`` does (``float32 / 255``), so every number matches
the tutorial's ``DataLoader`` loop bit for bit while skipping its per-sample
PIL round trip.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
import shutil
import struct
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

from fmnist_gui.errors import FmnistError
from fmnist_gui.system.fileio import write_atomically

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# Debian's package "dataset-fashion-mnist" installs the four .gz files here;
# FMNIST_GUI_SYSTEM_DATASET points elsewhere (tests use it to hide the package).
SYSTEM_DATASET_DIR = Path("/usr/share/datasets/fashion-mnist")


def system_dataset_dir() -> Path:
    """Where Debian's package puts the files, unless FMNIST_GUI_SYSTEM_DATASET says otherwise."""
    return Path(os.environ.get("FMNIST_GUI_SYSTEM_DATASET") or SYSTEM_DATASET_DIR)


_IMAGE_MAGIC, _LABEL_MAGIC = 0x00000803, 0x00000801

# progress(what, done, total); total is 0 when unknown.
ProgressFn = Callable[[str, int, int], None]


class DataError(FmnistError, RuntimeError):
    """The dataset is missing, unreadable or corrupt; the message says what to do."""


class DownloadCancelled(DataError):  # noqa: N818 - the user's choice, not an error
    """The user cancelled a download; nothing half-written was left behind."""


def raw_folder(root: Path) -> Path:
    """torchvision's layout: ``ROOT/FashionMNIST/raw``."""
    return Path(root) / "FashionMNIST" / "raw"


def missing_files(root: Path) -> list[str]:
    folder = raw_folder(root)
    return [name for name in RAW_FILES if not (folder / name).is_file()]


def system_dataset_available(system_dir: Path | None = None) -> bool:
    system_dir = system_dataset_dir() if system_dir is None else system_dir
    return all((Path(system_dir) / f"{name}.gz").is_file() for name in RAW_FILES)


def copy_from_system(
    root: Path, system_dir: Path | None = None, names: list[str] | None = None
) -> None:
    """Decompress ``NAME.gz`` files (default: the Debian package's) into ``root``.

    Atomically, file by file; ``names`` limits it to those files (default: every
    missing one).
    """
    system_dir = system_dataset_dir() if system_dir is None else system_dir
    folder = raw_folder(root)
    folder.mkdir(parents=True, exist_ok=True)
    for name in missing_files(root) if names is None else names:
        source = Path(system_dir) / f"{name}.gz"
        try:
            with gzip.open(source, "rb") as src:
                write_atomically(folder / name, functools.partial(_copy_from, src))
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise DataError(
                f"{source} is damaged ({exc or type(exc).__name__}): delete it or "
                "reinstall it, and fetch the data again"
            ) from None


def _copy_from(source: gzip.GzipFile, out: BinaryIO) -> None:
    shutil.copyfileobj(source, out)


def _write_decompressed(payload: bytes, out: BinaryIO) -> None:
    out.write(gzip.decompress(payload))


def download(
    root: Path,
    progress: ProgressFn | None = None,
    should_cancel: Callable[[], bool] = lambda: False,
    mirrors: list[str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Download with torchvision's mirrors and MD5 sums, reporting progress.

    torchvision's own ``download=True`` prints to the terminal and cannot be
    cancelled; this uses the same sources and checks, but chunked, so a GUI can
    show a progress bar and stop it. Raises ``DownloadCancelled`` or
    ``DataError``; a partial file never stays on disk.
    """
    from torchvision.datasets import FashionMNIST

    folder = raw_folder(root)
    folder.mkdir(parents=True, exist_ok=True)
    for archive, md5 in FashionMNIST.resources:
        target = folder / archive.removesuffix(".gz")
        if target.is_file():
            continue
        errors = []
        for mirror in mirrors or FashionMNIST.mirrors:
            try:
                payload = _fetch(mirror + archive, progress, should_cancel, timeout)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                errors.append(f"{mirror}: {getattr(exc, 'reason', exc)}")
                continue
            if hashlib.md5(payload).hexdigest() != md5:
                errors.append(f"{mirror}: {archive} failed its MD5 check")
                continue
            write_atomically(target, functools.partial(_write_decompressed, payload))
            break
        else:
            raise DataError(f"could not download {archive}: " + "; ".join(errors))


def _fetch(url, progress, should_cancel, timeout) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0)
        chunks, done = [], 0
        name = url.rsplit("/", 1)[-1]
        while True:
            if should_cancel():
                raise DownloadCancelled("download cancelled")
            chunk = response.read(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            done += len(chunk)
            if progress is not None:
                progress(name, done, total)
    return b"".join(chunks)


def ensure_dataset(
    root: Path,
    *,
    allow_download: bool = True,
    progress: ProgressFn | None = None,
    system_dir: Path | None = None,
) -> None:
    """Make sure the four raw files are under ``root``, or raise ``DataError``.

    Tries, in order: the files already there (or their ``.gz``); Debian's
    ``dataset-fashion-mnist``;
    a download (when allowed). The error names the folder and every fix.
    """
    root = Path(root)
    folder = raw_folder(root)
    for name in RAW_FILES:
        for path in (folder / name, folder / f"{name}.gz"):
            if path.is_dir():
                raise DataError(
                    f"{path} is a folder, not the data file it is named after: move it "
                    "out of the way, then try again"
                )
    if not missing_files(root):
        return
    try:
        # Files the user dropped in still compressed count as present, each on its own.
        dropped = [name for name in missing_files(root) if (folder / f"{name}.gz").is_file()]
        if dropped:
            copy_from_system(root, folder, dropped)
            if not missing_files(root):
                return
        if system_dataset_available(system_dir):
            copy_from_system(root, system_dir)
            return
        if allow_download:
            try:
                download(root, progress)
                return
            except DataError as exc:
                reason = f"the download failed ({exc})"
        else:
            reason = "downloading was not allowed"
    except OSError as exc:
        raise DataError(
            f"cannot write the dataset into {raw_folder(root)}: {exc.strerror or exc}. "
            "Choose a writable folder with --data-dir."
        ) from None
    missing = missing_files(root)
    what = (
        "Fashion-MNIST is not in"
        if len(missing) == len(RAW_FILES)
        else f"Fashion-MNIST lacks {', '.join(missing)} in"
    )
    raise DataError(
        f"{what} {raw_folder(root)} and {reason}. Fixes: connect to the "
        "internet and retry; or install Debian's package (apt-get install "
        "dataset-fashion-mnist); or put the four files "
        f"({', '.join(RAW_FILES)}, or their .gz) in that folder; "
        "or point --data-dir at a folder that has them."
    )


def check_idx_file(path: Path, expect_magic: int) -> int:
    """Check an IDX file's header against its size; return its item count."""
    try:
        with open(path, "rb") as f:
            header = f.read(16 if expect_magic == _IMAGE_MAGIC else 8)
        size = os.path.getsize(path)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    n_dims = 3 if expect_magic == _IMAGE_MAGIC else 1
    if len(header) < 4 * (n_dims + 1):
        raise DataError(f"{path} is truncated ({size} bytes): delete it and fetch the data again")
    magic, *dims = struct.unpack(f">{n_dims + 1}I", header)
    if magic != expect_magic:
        kind = "image" if expect_magic == _IMAGE_MAGIC else "label"
        raise DataError(
            f"{path} is not an IDX {kind} file (magic {magic:#010x}): "
            "delete it and fetch the data again"
        )
    if n_dims == 3 and dims[1:] != [28, 28]:
        raise DataError(f"{path} holds {dims[1]}x{dims[2]} images, expected 28x28")
    if dims[0] == 0:
        raise DataError(f"{path} holds no items: delete it and fetch the data again")
    expected = 4 * (n_dims + 1) + math.prod(dims)
    if size != expected:
        state = "truncated" if size < expected else "longer than its header says"
        raise DataError(
            f"{path} is {state} ({size} bytes, expected {expected}): "
            "delete it and fetch the data again"
        )
    return dims[0]


@dataclass(frozen=True)
class Split:
    """One split of the dataset, held in memory as torchvision loads it."""

    images: torch.Tensor  # uint8, (N, 28, 28)
    labels: torch.Tensor  # int64, (N,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class FashionMNISTData:
    train: Split
    test: Split


def load_split(root: Path, train: bool) -> Split:
    """Read one split with torchvision's ``FashionMNIST`` after checking its files.

    What torchvision returned is kept in ``ROOT/FashionMNIST/fmnist-gui-cache/``
    with the size and modification time of the two raw files it came from; while
    those are unchanged, the next start loads the tensors from there and need
    not import torchvision (about 1.8 s of a warm start).
    """
    prefix = "train" if train else "t10k"
    folder = raw_folder(root)
    images_file = folder / f"{prefix}-images-idx3-ubyte"
    labels_file = folder / f"{prefix}-labels-idx1-ubyte"
    n_images = check_idx_file(images_file, _IMAGE_MAGIC)
    n_labels = check_idx_file(labels_file, _LABEL_MAGIC)
    if n_images != n_labels:
        raise DataError(
            f"{folder}: {n_images} {prefix} images but {n_labels} labels; "
            "the files come from different sets"
        )
    cache = split_cache_file(root, train)
    key = _raw_key(images_file, labels_file)
    cached = _read_split_cache(cache, key, n_images)
    if cached is not None:
        return cached
    from torchvision.datasets import FashionMNIST

    dataset = FashionMNIST(str(root), train=train, download=False)
    if int(dataset.targets.max()) >= len(CLASS_NAMES) or int(dataset.targets.min()) < 0:
        raise DataError(f"{labels_file} has labels outside 0-9")
    split = Split(dataset.data, dataset.targets)
    _write_split_cache(cache, key, split)
    return split


def split_cache_file(root: Path, train: bool) -> Path:
    """Where ``load_split`` keeps the tensors torchvision read for one split."""
    return raw_folder(root).parent / "fmnist-gui-cache" / ("train.pt" if train else "test.pt")


def _raw_key(*files: Path) -> str:
    """Size and modification time of each raw file: any rewrite of them changes it."""
    parts = []
    for path in files:
        st = path.stat()
        parts.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}")
    return ";".join(parts)


def _read_split_cache(cache: Path, key: str, count: int) -> Split | None:
    """The cached split if it was made from the same raw files; else ``None``."""
    try:
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        images, labels = saved["images"], saved["labels"]
        fresh = (
            saved["key"] == key
            and images.dtype == torch.uint8
            and tuple(images.shape) == (count, 28, 28)
            and labels.dtype == torch.int64
            and tuple(labels.shape) == (count,)
        )
    except Exception:  # noqa: BLE001 - a missing or unreadable cache is remade from the files
        return None
    return Split(images, labels) if fresh else None


def _write_split_cache(cache: Path, key: str, split: Split) -> None:
    """Keep ``split`` for the next start; a folder we cannot write only costs that speed-up."""
    state = {"key": key, "images": split.images, "labels": split.labels}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(cache, lambda f: torch.save(state, f))
    except OSError:
        pass


def load_dataset(root: Path, *, allow_download: bool = True) -> FashionMNISTData:
    """Find or fetch the data under ``root``, then load both splits."""
    ensure_dataset(root, allow_download=allow_download)
    return FashionMNISTData(train=load_split(root, True), test=load_split(root, False))


class BatchLoader:
    """Batches from in-memory uint8 tensors, converted as ``ToTensor`` would.

    With ``shuffle`` the order of each epoch is ``torch.randperm`` drawn from
    ``generator``; the engine saves that generator's state at each epoch start
    so that an interrupted epoch can be replayed in the same order.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.device = torch.device(device)
        # Moved once: on a GPU the whole set (47 MB of uint8) fits easily.
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)

    @property
    def dataset_size(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        return math.ceil(self.dataset_size / self.batch_size)

    def epoch_order(self) -> torch.Tensor | None:
        """Draw this epoch's order (``None`` means the natural order)."""
        if not self.shuffle:
            return None
        return torch.randperm(self.dataset_size, generator=self.generator).to(self.device)

    def batches(
        self, order: torch.Tensor | None = None, start: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(X, y)`` from batch index ``start`` on; X is ``(B, 1, 28, 28)`` float32."""
        for first in range(start * self.batch_size, self.dataset_size, self.batch_size):
            last = min(first + self.batch_size, self.dataset_size)
            if order is None:
                images, labels = self.images[first:last], self.labels[first:last]
            else:
                index = order[first:last]
                images, labels = self.images[index], self.labels[index]
            yield images.unsqueeze(1).to(torch.float32).div(255), labels
