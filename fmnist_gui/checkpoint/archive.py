"""Check a ``torch.save`` archive before ``torch.load`` reads any of it.

``torch.save`` writes a zip archive of *stored* (uncompressed) records, each
with a CRC-32 of its bytes. Two things follow, and both are checked here
from the archive's own directory and records, with no tensor built:

* A record that is compressed cannot come from ``torch.save``; deflate is how a
  few megabytes expand to gigabytes (a zip bomb), so such files are refused
  without inflating a byte. Stored records cannot expand: the total size the
  directory declares is checked against the same cap as the file's size.
* A flipped byte anywhere in a record changes its CRC-32. ``torch.load`` does
  not check CRCs, so a damaged weight would load silently; here every record is
  read once, in chunks, and its CRC compared (about 10 ms for an 8 MB file).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

_CHUNK = 1 << 20


class ArchiveError(ValueError):
    """Why an archive is refused: ``reason`` and ``fix`` complete "FILE ..." sentences."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


def verify_archive(path: Path, max_bytes: int) -> None:
    """Raise ``ArchiveError`` unless ``path`` is an intact archive as ``torch.save`` writes."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise ArchiveError(
            f"is truncated or damaged (not a complete PyTorch archive: {exc})",
            "use another copy",
        ) from None
    with archive:
        infos = archive.infolist()
        if not infos:
            raise ArchiveError("is an empty archive", "it is not one of this app's files")
        declared = 0
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED:
                raise ArchiveError(
                    f"holds a compressed record ({info.filename!r}), which torch.save never "
                    "writes; compressed records can expand to many gigabytes when loaded",
                    "it was not written by this app or by torch.save; it is not loaded",
                )
            declared += info.file_size
            if info.file_size != info.compress_size or declared > max_bytes:
                raise ArchiveError(
                    f"declares {declared / 2**20:.0f} MiB of contents or more, over the "
                    f"{max_bytes / 2**20:.0f} MiB limit for checkpoints",
                    "it is not one of this app's files; it is not loaded",
                )
        for info in infos:
            _check_crc(archive, info)


def _check_crc(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    # zipfile compares a record's CRC-32 once it has been read to its end.
    try:
        with archive.open(info) as record:
            while record.read(_CHUNK):
                pass
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        if "CRC" in str(exc):
            raise ArchiveError(
                f"is damaged: the bytes of its record {info.filename!r} do not match their "
                "checksum (CRC-32), so some values in it have changed since it was saved",
                "use another copy of the file",
            ) from None
        raise ArchiveError(
            f"is damaged: its record {info.filename!r} cannot be read ({exc})",
            "use another copy of the file",
        ) from None


__all__ = ["ArchiveError", "verify_archive"]
