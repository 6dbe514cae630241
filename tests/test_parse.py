"""Parsing real files: heading paths, pages, tables kept whole, FAQ pairs, clear errors."""

import json

import pytest

from ingestion.parse import parse_file
from ingestion.validate import IngestError
from tests.documents import write_docx, write_pdf


def test_markdown_heading_paths(manual_md):
    doc = parse_file(manual_md)
    assert doc.title == "Zephyr Fan Manual"
    by_text = {b.text.split(".")[0]: b for b in doc.blocks}
    night = by_text["Press the moon button to enter night mode"]
    assert night.heading_path == ("Zephyr Fan Manual", "Night mode")
    assert by_text["Unplug the Zephyr fan before cleaning"].heading_path[-1] == "Cleaning"


def test_markdown_table_is_one_whole_block(manual_md):
    tables = [b for b in parse_file(manual_md).blocks if b.whole]
    assert len(tables) == 1
    assert tables[0].heading_path[-1] == "Specifications"
    assert "Low | 900 rpm" in tables[0].text and "High | 2400 rpm" in tables[0].text


def test_html_headings(tmp_path):
    path = tmp_path / "kettle.html"
    path.write_text(
        "<html><body><h1>Kettle Guide</h1><h2>Descaling</h2>"
        "<p>Fill the kettle with equal parts water and vinegar, then boil it twice.</p>"
        "<h2>Safety</h2><p>Never immerse the base in water.</p></body></html>"
    )
    doc = parse_file(path)
    descale = next(b for b in doc.blocks if "vinegar" in b.text)
    assert descale.heading_path == ("Kettle Guide", "Descaling")


def test_html_site_navigation_is_not_ingested(tmp_path):
    """A documentation-generator page (Sphinx-like): sidebar, related links, permalinks, a table of
    contents; only the page's own text reaches the blocks, and headings lose their "¶"."""
    toc = "".join(f'<li><a href="p{i}.html">Chapter {i}</a></li>' for i in range(8))
    path = tmp_path / "sync.html"
    path.write_text(
        "<html><body>"
        f'<div class="related" role="navigation"><a href="index.html">index</a> next | previous</div>'
        '<div class="document"><div class="body" role="main">'
        '<h1>Sync<a class="headerlink" href="#sync">\u00b6</a></h1>'
        '<div id="toc"><a href="#a">Pausing</a></div>'
        '<h2>Pausing sync<a class="headerlink" href="#p">\u00b6</a></h2>'
        "<p>Right-click the tray icon and choose Pause sync. See <a href='#r'>Resuming</a>.</p>"
        f"<ul>{toc}</ul>"
        "</div></div>"
        f'<div class="sphinxsidebar"><h3>Table of Contents</h3><ul>{toc}</ul><h3>Quick search</h3></div>'
        "</body></html>"
    )
    doc = parse_file(path)
    text = "\n".join(b.text for b in doc.blocks)
    assert [b.heading_path for b in doc.blocks] == [("Sync", "Pausing sync")]
    assert "Right-click the tray icon and choose Pause sync. See Resuming." in text
    for boilerplate in ("Chapter", "Table of Contents", "Quick search", "previous", "\u00b6", "Pausing\n"):
        assert boilerplate not in text


def test_pdf_keeps_page_numbers(tmp_path):
    path = write_pdf(
        tmp_path / "toaster.pdf",
        [
            ["Toaster Manual", "Insert two slices of bread and press the lever down to start toasting."],
            ["Crumb tray", "Slide out the crumb tray at the bottom and empty it after every ten uses."],
        ],
    )
    doc = parse_file(path)
    crumb = next(b for b in doc.blocks if "crumb tray at the bottom" in b.text)
    assert crumb.page == 2
    assert next(b for b in doc.blocks if "lever down" in b.text).page == 1


def test_docx_headings(tmp_path):
    path = write_docx(
        tmp_path / "blender.docx",
        [("Assembly", ["Lock the jar onto the base until it clicks."]), ("Cleaning", ["Rinse the blades at once."])],
    )
    doc = parse_file(path)
    rinse = next(b for b in doc.blocks if "Rinse" in b.text)
    assert rinse.heading_path[-1] == "Cleaning"


def test_faq_csv_one_block_per_pair(tmp_path):
    path = tmp_path / "faq.csv"
    path.write_text('Question,Answer\nHow do I pair it?,"Hold the button for 5 s, then pick it in Bluetooth."\n'
                    "Is it waterproof?,It is splash-proof (IPX4) but not waterproof.\n")
    doc = parse_file(path)
    assert doc.is_faq and len(doc.blocks) == 2
    assert doc.blocks[0].text.startswith("Q: How do I pair it?\nA: Hold the button")
    assert all(b.whole for b in doc.blocks)


def test_faq_json(tmp_path):
    path = tmp_path / "faq.json"
    path.write_text(json.dumps({"faqs": [{"question": "Warranty?", "answer": "Two years."}]}))
    assert parse_file(path).blocks[0].text == "Q: Warranty?\nA: Two years."


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("faq.csv", "title,body\nx,y\n", "FAQ CSV needs 'question' and 'answer' columns (found: title, body)"),
        ("faq.csv", "question,answer\nHow?,\n", "line 2: empty question or answer"),
        ("faq.json", "{not json", "invalid JSON at line 1"),
        ("faq.json", '[{"question": "Only a question"}]', "item 0: needs a non-empty 'question' and 'answer'"),
    ],
)
def test_faq_errors_name_the_file_and_the_problem(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(IngestError) as info:
        parse_file(path)
    assert str(info.value).startswith(f"{path}: {expected}")


def test_pdf_without_text(tmp_path):
    path = write_pdf(tmp_path / "blank.pdf", [[]])
    with pytest.raises(IngestError, match="no text found"):
        parse_file(path)


def test_html_in_its_declared_encoding(tmp_path):
    path = tmp_path / "cafe.html"
    page = ('<html><head><meta charset="iso-8859-1"></head>'
            "<body><h1>Caf\xe9 machine</h1><p>D\xe9tartrez chaque mois.</p></body></html>")
    path.write_bytes(page.encode("iso-8859-1"))
    doc = parse_file(path)
    assert doc.title == "Café machine" and doc.blocks[0].text == "Détartrez chaque mois."
