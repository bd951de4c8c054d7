"""PNG plots for the report, MLflow and ``dvc plots show``.

``dvc.yaml`` lists these PNGs as DVC's plots: DVC embeds image plots as ``<img>`` tags, so its
HTML page renders without a network (its Vega charts load their library from a CDN). The files
are DVC outputs, so they are byte-for-byte reproducible: matplotlib's default style whatever
the user's ``matplotlibrc``, and no version or date in the file (:func:`save_figure`).
:func:`check_offline_page` checks a page that DVC wrote.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pandas as pd
from PIL import Image

from occlufer.viz import image_grid

#: file metadata matplotlib would write (its version, a date): left out, so equal data give
#: equal bytes
_METADATA: dict[str, dict[str, None]] = {
    ".png": {"Software": None},
    ".svg": {"Date": None, "Creator": None},
    ".pdf": {"CreationDate": None, "Creator": None, "Producer": None},
}
#: on top of matplotlib's default style: fixed SVG element ids (random otherwise)
_RC = {"svg.hashsalt": "occlufer"}


def _plt():  # noqa: ANN202 - matplotlib.pyplot
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib figure without the metadata that varies between runs and versions."""
    fig.savefig(path, metadata=_METADATA.get(Path(path).suffix.lower()))


@contextmanager
def _figure(path: Path, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """``(figure, axes)`` drawn under matplotlib's default style, then saved to ``path``."""
    plt = _plt()
    with plt.style.context("default"), plt.rc_context(_RC):
        fig, axes = plt.subplots(**subplots)
        try:
            yield fig, axes
            fig.tight_layout()
            save_figure(fig, path)
        finally:
            plt.close(fig)


def _legend(ax: Any, **kwargs: Any) -> None:
    if ax.get_legend_handles_labels()[0]:  # none when every series was missing
        ax.legend(**kwargs)


def robustness_png(table: pd.DataFrame, auc: Mapping[str, float], path: Path) -> None:
    """Accuracy against occluded ratio, one line per occluder type (area in the legend)."""
    with _figure(path, figsize=(7, 4.5), dpi=100) as (_, ax):
        for col in table.columns.drop("ratio"):
            ax.plot(table["ratio"], table[col], marker="o", ms=3,
                    label=f"{col} (auc {auc.get(col, np.nan):.3f})")
        ax.set_xlabel("occluded fraction of the face")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.set_title("Robustness: clean val faces re-occluded")
        _legend(ax, fontsize=7, loc="lower left", ncol=2)


def reliability_png(tables: Mapping[str, pd.DataFrame], ece: Mapping[str, float],
                    path: Path) -> None:
    """Reliability diagram: accuracy against mean confidence per bin (diagonal = calibrated)."""
    with _figure(path, figsize=(5, 5), dpi=100) as (_, ax):
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
        for name, t in tables.items():
            if len(t):
                ax.plot(t["confidence"], t["accuracy"], marker="o", ms=4,
                        label=f"{name} (ECE {ece.get(name, np.nan):.3f})")
        ax.set_xlabel("confidence (top-class probability)")
        ax.set_ylabel("accuracy")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        _legend(ax, fontsize=8, loc="upper left")
        ax.set_title("Reliability diagram")


def training_png(history: pd.DataFrame, path: Path) -> None:
    """Loss and accuracy per epoch from ``models/history.csv`` (train, clean and occluded val)."""
    from matplotlib.ticker import MaxNLocator

    with _figure(path, ncols=2, figsize=(9, 3.5), dpi=100) as (_, (a, b)):
        for ax, name, cols in ((a, "loss", ("train/loss", "val/loss")),
                               (b, "accuracy", ("train/acc", "val/acc", "val_occluded/acc"))):
            for col in cols:
                if col in history and history[col].notna().any():
                    ax.plot(history["epoch"], history[col], marker="o", ms=3, label=col)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(name)
            ax.grid(alpha=0.3)
            _legend(ax, fontsize=8)


def mistakes_png(images: Sequence[np.ndarray], captions: Sequence[str], path: Path,
                 per_row: int = 8) -> None:
    """The given faces in rows of ``per_row``, each captioned (true / predicted / confidence)."""
    rows = [list(images[i:i + per_row]) for i in range(0, len(images), per_row)]
    caps = [list(captions[i:i + per_row]) for i in range(0, len(captions), per_row)]
    scale = max(1, round(96 / images[0].shape[0]))
    image_grid(rows, captions=caps, scale=scale, pad=4).save(path)


# -- offline check of DVC's plots page ------------------------------------------------------

#: tag -> attributes whose URL the browser fetches while rendering the page
_FETCHED = {"script": ("src",), "img": ("src", "srcset"), "link": ("href",),
            "iframe": ("src",), "embed": ("src",), "object": ("data",), "source": ("src",),
            "video": ("src", "poster"), "audio": ("src",), "input": ("src",)}
_REMOTE = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)  # http(s)://, //host
_CSS_URL = re.compile(r"url\(\s*['\"]?\s*((?:[a-z][a-z0-9+.-]*:)?//[^'\")\s]*)", re.IGNORECASE)
#: calls that draw a chart with a JavaScript library (DVC's Vega and Plotly renderers)
_CHART_CALLS = ("vegaEmbed(", "Plotly.newPlot(")
#: an inline script this long is taken to be a bundled library (Vega/Plotly are ~0.3-3 MB)
_LIBRARY_CHARS = 50_000


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
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.fetched: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.images: list[str] = []
        self.scripts: list[str] = []                    # inline script bodies
        self.local_scripts: list[str] = []              # <script src> that is not remote
        self.styles: list[str] = []                     # <style> bodies and style="" values
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        for attr in _FETCHED.get(tag, ()):
            if attr in values:
                self.fetched.append((tag, attr, values[attr]))
        if tag == "img" and "src" in values:
            self.images.append(values["src"])
        if tag == "script" and values.get("src") and not _remote(values["src"]):
            self.local_scripts.append(values["src"])
        if "style" in values:
            self.styles.append(values["style"])
        self._in = tag if tag in ("script", "style") else None
        if self._in:
            (self.scripts if tag == "script" else self.styles).append("")

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.scripts[-1] += data
        elif self._in == "style":
            self.styles[-1] += data


def _remote(url: str) -> bool:
    """Whether the browser fetches ``url`` from another host (``file://`` is local)."""
    return bool(_REMOTE.match(url)) and not url.strip().lower().startswith("file:")


def _local(url: str, folder: Path) -> Path:
    """The file a local ``url`` of a page in ``folder`` names (relative or ``file://``)."""
    url = url.strip()
    return folder / unquote(url[7:] if url.lower().startswith("file://") else url)


def _image_problem(src: str, folder: Path) -> str | None:
    """Why the ``<img src>`` cannot be shown offline (None: it can)."""
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
        blob = path.read_bytes()
        name = src
    if _is_svg(src, blob):
        return None
    try:
        with Image.open(io.BytesIO(blob)) as img:
            img.verify()
    except Exception as exc:  # noqa: BLE001 - any decoder error: the browser shows nothing
        return f"<img> {name} is not a readable image ({exc.__class__.__name__})"
    return None


def _is_svg(src: str, blob: bytes) -> bool:
    """Whether an image is SVG (PIL does not read SVG; browsers do)."""
    return (src.lower().endswith(".svg") or src.startswith("data:image/svg")
            or blob.lstrip()[:4] == b"<svg" or blob.lstrip()[:5] == b"<?xml")


def check_offline_page(html: Path) -> OfflinePage:
    """Whether the page ``html`` (``dvc plots show``/``diff`` output) renders without a network.

    Problems: anything the browser would fetch from another host (``http(s)://`` or ``//``:
    scripts, images, stylesheets, CSS ``url()``), an ``<img>`` whose file is missing or is not
    an image, and JavaScript charts (Vega, Plotly) with no local copy of their library (a
    ``<script src>`` on disk or a bundled inline script).
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
    for src in parser.images:
        if _remote(src):
            continue  # reported above
        problem = _image_problem(src, html.parent)
        if problem:
            page.problems.append(problem)
        else:
            page.images += 1
    page.charts = sum(s.count(call) for s in parser.scripts for call in _CHART_CALLS)
    bundled = any(len(s) >= _LIBRARY_CHARS for s in parser.scripts)
    local = [s for s in parser.local_scripts if _local(s, html.parent).is_file()]
    if page.charts and not (bundled or local):
        page.problems.append(f"{page.charts} JavaScript chart(s) (Vega/Plotly) but no local copy "
                             f"of the library: blank without a network")
    return page
