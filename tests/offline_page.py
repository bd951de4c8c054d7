"""Test support: does a page written by ``dvc plots show``/``diff`` render without a network?
Used by the tests and ``benchmarks/plots_offline.py``.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

from PIL import Image

#: tag -> attributes whose URL the browser fetches while rendering the page
_FETCHED = {"script": ("src",), "img": ("src", "srcset"), "link": ("href",),
            "iframe": ("src",), "embed": ("src",), "object": ("data",), "source": ("src",),
            "video": ("src", "poster"), "audio": ("src",), "input": ("src",)}
_REMOTE = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)  # http(s)://, //host
_CSS_URL = re.compile(r"url\(\s*['\"]?\s*((?:[a-z][a-z0-9+.-]*:)?//[^'\")\s]*)", re.IGNORECASE)
_CHART_CALLS = ("vegaEmbed(", "Plotly.newPlot(")  # DVC's Vega and Plotly renderers
_LIBRARY_CHARS = 50_000  # an inline script this long is a bundled library (Vega: ~0.3-3 MB)


@dataclass
class OfflinePage:
    """What :func:`check_offline_page` found: images shown, JavaScript charts, problems."""

    images: int = 0
    charts: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class _PageParser(HTMLParser):
    """Collects (tag, attribute, URL) the browser fetches, inline scripts and styles."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.fetched: list[tuple[str, str, str]] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []  # <style> bodies and style="" values
        self._in: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.fetched += [(tag, a, values[a]) for a in _FETCHED.get(tag, ()) if a in values]
        if "style" in values:
            self.styles.append(values["style"])
        self._in = {"script": self.scripts, "style": self.styles}.get(tag)
        if self._in is not None:
            self._in.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in is not None:
            self._in[-1] += data


def _remote(url: str) -> bool:
    """Whether the browser fetches ``url`` from another host (``file://`` is local)."""
    return bool(_REMOTE.match(url)) and not url.strip().lower().startswith("file:")


def _local(url: str, folder: Path) -> Path:
    """The file a local ``url`` of a page in ``folder`` names (relative or ``file://``)."""
    url = url.strip()
    return folder / unquote(url[7:] if url.lower().startswith("file://") else url)


def _image_problem(src: str, folder: Path) -> str | None:
    """Why the ``<img src>`` cannot be shown offline (None: it can; SVG, which PIL does not
    read, is taken as shown)."""
    if src.startswith("data:"):
        head, _, payload = src.partition(",")
        if not head.startswith("data:image"):
            return f"<img> data URI is not an image ({head[:40]})"
        try:
            blob = (base64.b64decode(payload, validate=True) if head.endswith(";base64")
                    else unquote(payload).encode())
        except (binascii.Error, ValueError):
            return "<img> data URI is not valid base64"
        name = "inline image"
    else:
        path = _local(src, folder)
        if not path.is_file():
            return f"<img> {src}: no such file ({path})"
        blob, name = path.read_bytes(), src
    if (src.lower().endswith(".svg") or src.startswith("data:image/svg")
            or blob.lstrip()[:4] == b"<svg" or blob.lstrip()[:5] == b"<?xml"):
        return None
    try:
        with Image.open(io.BytesIO(blob)) as img:
            img.verify()
    except Exception as exc:  # noqa: BLE001 - any decoder error: the browser shows nothing
        return f"<img> {name} is not a readable image ({exc.__class__.__name__})"
    return None


def check_offline_page(html: Path) -> OfflinePage:
    """Whether the page ``html`` (``dvc plots show``/``diff`` output) renders without a network.

    Problems: anything fetched from another host (scripts, images, stylesheets, CSS ``url()``),
    an ``<img>`` whose file is missing or not an image, and JavaScript charts (Vega, Plotly)
    with no local copy of their library (a ``<script src>`` on disk or a bundled inline script).
    """
    html = Path(html)
    parser = _PageParser()
    parser.feed(html.read_text(encoding="utf-8"))
    parser.close()
    page = OfflinePage()
    for tag, attr, value in parser.fetched:
        urls = [c.split()[0] for c in value.split(",") if c.strip()] if attr == "srcset" \
            else [value]
        if any(_remote(u) for u in urls):
            page.problems.append(f"<{tag} {attr}> loads {value.strip()[:120]} from the network")
    for style in parser.styles:
        page.problems += [f"CSS url() loads {url[:120]} from the network"
                          for url in _CSS_URL.findall(style) if _remote(url)]
    for tag, attr, src in parser.fetched:
        if tag == "img" and attr == "src" and not _remote(src):  # remote: reported above
            problem = _image_problem(src, html.parent)
            if problem:
                page.problems.append(problem)
            else:
                page.images += 1
    page.charts = sum(s.count(call) for s in parser.scripts for call in _CHART_CALLS)
    bundled = any(len(s) >= _LIBRARY_CHARS for s in parser.scripts)
    local = [v for t, a, v in parser.fetched
             if t == "script" and v and not _remote(v) and _local(v, html.parent).is_file()]
    if page.charts and not (bundled or local):
        page.problems.append(f"{page.charts} JavaScript chart(s) (Vega/Plotly) but no local copy "
                             f"of the library: blank without a network")
    return page
