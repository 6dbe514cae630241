"""Writers for small real documents used as test fixtures (the suite needs no outside data)."""

from __future__ import annotations

from pathlib import Path


def write_pdf(path: Path, pages: list[list[str]]) -> Path:
    """A real PDF with one page per list of paragraphs."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for paragraphs in pages:
        pdf.add_page()
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph)
            pdf.ln(4)
    pdf.output(str(path))
    return path


def write_docx(path: Path, sections: list[tuple[str, list[str]]]) -> Path:
    import docx

    document = docx.Document()
    for heading, paragraphs in sections:
        document.add_heading(heading, level=1)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
    document.save(str(path))
    return path


MANUAL_MD = """# Zephyr Fan Manual

## Cleaning

Unplug the Zephyr fan before cleaning. Wipe the blades with a damp cloth once a month.

## Night mode

Press the moon button to enter night mode. The fan slows to 20 percent and the display dims.
Press the moon button again to leave night mode.

## Specifications

| Setting | Speed |
|---|---|
| Low | 900 rpm |
| High | 2400 rpm |
"""
