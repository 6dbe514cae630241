"""Cheap checks that reject a bad file before any parser touches it, with a one-line reason."""

from __future__ import annotations

import zipfile
from pathlib import Path

TEXT_TYPES = {".md", ".markdown", ".txt", ".text", ".html", ".htm", ".csv", ".json"}
BINARY_TYPES = {".pdf", ".docx"}
SUPPORTED = TEXT_TYPES | BINARY_TYPES

# A DOCX that inflates to more than this, or more than this many times its size, is refused.
_DOCX_MAX_EXPANDED_BYTES = 200 * 1024 * 1024
_DOCX_MAX_RATIO = 100


class IngestError(ValueError):
    """A file that cannot be ingested; ``str()`` is a one-line message naming the file."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def check_file(path: Path, max_bytes: int) -> None:
    """Raise :class:`IngestError` if *path* is obviously not an ingestible document."""
    if not path.is_file():
        raise IngestError(path, "no such file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise IngestError(
            path, f"unsupported type {suffix or '(none)'!r}; supported: {', '.join(sorted(SUPPORTED))}"
        )
    size = path.stat().st_size
    if size == 0:
        raise IngestError(path, "empty file")
    if size > max_bytes:
        raise IngestError(
            path,
            f"file is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.1f} MB limit "
            "(raise SUPPORTBOT_MAX_FILE_MB to allow it)",
        )
    if suffix in TEXT_TYPES:
        _check_text(path)
    elif suffix == ".pdf":
        _check_pdf(path)
    elif suffix == ".docx":
        _check_docx(path, size)


def _check_text(path: Path) -> None:
    head = path.read_bytes()[:65536]
    if b"\x00" in head:
        raise IngestError(path, f"binary content behind a text extension ({path.suffix})")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut at the 64 KiB boundary is fine
            raise IngestError(path, "not UTF-8 text; convert it to UTF-8 first") from None


def _check_pdf(path: Path) -> None:
    with path.open("rb") as f:
        head = f.read(1024)
        f.seek(max(0, path.stat().st_size - 2048))
        tail = f.read()
    if b"%PDF-" not in head:
        raise IngestError(path, "not a PDF (no %PDF- header)")
    if b"%%EOF" not in tail:
        raise IngestError(path, "truncated PDF (no %%EOF marker at the end)")


def _check_docx(path: Path, size: int) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            names = {info.filename for info in entries}
            expanded = sum(info.file_size for info in entries)
    except zipfile.BadZipFile:
        raise IngestError(path, "corrupt DOCX (not a zip archive)") from None
    if "word/document.xml" not in names:
        raise IngestError(path, "corrupt DOCX (no word/document.xml inside)")
    if expanded > _DOCX_MAX_EXPANDED_BYTES or expanded > _DOCX_MAX_RATIO * size:
        raise IngestError(
            path, f"DOCX expands to {expanded / 1e6:.0f} MB from {size / 1e6:.1f} MB (zip bomb?); refused"
        )
