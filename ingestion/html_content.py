"""The content of an HTML manual page, without the site around it.

Documentation generators wrap every page in navigation: Sphinx's sidebar ("Table of Contents",
"Quick search", "next | previous"), Asciidoctor's table of contents, the "¶" permalink after each
heading. Ingested as text, that boilerplate becomes passages that match every question about a
page's topics and crowds the answer out of the top results (measured on the Nextcloud client
manual: a sidebar passage ranked among the top three for several questions). Readers skip it, and so
does this: keep the page's main element when it marks one, drop navigation landmarks, permalinks
and link lists (tables of contents, menus) whose text is almost all link text.
"""

from __future__ import annotations

import lxml.html
from lxml.etree import ParserError

_MAIN = "//main | //*[@role='main'] | //article"
_BOILERPLATE = (
    "//nav | //aside | //script | //style | //noscript | //template"
    " | //*[@role='navigation' or @role='search' or @role='banner' or @role='contentinfo']"
    " | //*[@id='toc'] | //a[contains(concat(' ', normalize-space(@class), ' '), ' headerlink ')]"
)
_LINK_LISTS = ("ul", "ol", "div", "table")
MIN_LINKS = 5  # a sentence with a few links is content; a block of five or more links and little else is a menu
MAX_LINK_SHARE = 0.8


def _is_link_list(element: lxml.html.HtmlElement) -> bool:
    links = element.xpath(".//a")
    if len(links) < MIN_LINKS:
        return False
    text = " ".join(element.text_content().split())
    link_text = sum(len(" ".join(a.text_content().split())) for a in links)
    return bool(text) and link_text / len(text) >= MAX_LINK_SHARE


def main_content(html: bytes | str) -> str:
    """*html* with its navigation removed (unchanged when it cannot be parsed)."""
    if isinstance(html, bytes):
        try:
            html = html.decode("utf-8")
        except UnicodeDecodeError:
            pass  # another encoding: lxml reads the page's own <meta charset> from the bytes
    try:
        root = lxml.html.document_fromstring(html)
    except (ParserError, ValueError):
        return html if isinstance(html, str) else html.decode("utf-8", errors="replace")
    mains = root.xpath(_MAIN)
    if mains:
        # The largest main element: some themes nest an <article> inside <main>, or mark a small one.
        main = max(mains, key=lambda e: len(e.text_content()))
        body = root.find("body")
        if body is not None:
            for child in list(body):
                body.remove(child)
            body.append(main)
    for element in root.xpath(_BOILERPLATE):
        if element.getparent() is not None:
            element.drop_tree()  # keeps the text that follows it (its tail)
    for element in [e for e in root.iter(*_LINK_LISTS) if _is_link_list(e)]:
        if element.getparent() is not None:
            element.drop_tree()  # keeps the text that follows it (its tail)
    return lxml.html.tostring(root, encoding="unicode")
