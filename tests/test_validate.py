"""Bad files are refused before parsing, each with a one-line reason naming the file."""

import zipfile
from pathlib import Path

import pytest

from ingestion.validate import IngestError, check_file

LIMIT = 1024 * 1024


def refused(path: Path, limit: int = LIMIT) -> str:
    with pytest.raises(IngestError) as info:
        check_file(path, limit)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.md"
    path.write_bytes(b"")
    assert "empty file" in refused(path)


def test_binary_behind_text_extension(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" * 50)
    assert "binary content" in refused(path)


def test_not_utf8_text(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Caf\xe9 cr\xe8me, tr\xe8s bien. ".encode("latin-1") * 10)
    assert "UTF-8" in refused(path)


def test_over_size_limit(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("word " * 300_000)
    assert "SUPPORTBOT_MAX_FILE_MB" in refused(path)


def test_unsupported_type(tmp_path):
    path = tmp_path / "slides.pptx"
    path.write_bytes(b"PK\x03\x04 not really")
    assert "unsupported type '.pptx'" in refused(path)


def test_not_a_pdf(tmp_path):
    path = tmp_path / "manual.pdf"
    path.write_text("<html>this is not a pdf</html>")
    assert "not a PDF" in refused(path)


def test_truncated_pdf(tmp_path):
    from tests.documents import write_pdf

    good = write_pdf(tmp_path / "good.pdf", [["Some text on a page."] * 20])
    check_file(good, LIMIT)  # the intact file passes
    data = good.read_bytes()
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(data[: len(data) // 2])
    assert "truncated PDF" in refused(cut)


def test_docx_zip_bomb(tmp_path):
    path = tmp_path / "bomb.docx"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", "<w:document/>")
        archive.writestr("word/media/padding.bin", b"\0" * (30 * 1024 * 1024))
    assert "zip bomb" in refused(path)


def test_docx_not_a_zip(tmp_path):
    path = tmp_path / "broken.docx"
    path.write_bytes(b"this is not a zip archive at all")
    assert "corrupt DOCX" in refused(path)


def test_missing_file(tmp_path):
    assert "no such file" in refused(tmp_path / "gone.md")
