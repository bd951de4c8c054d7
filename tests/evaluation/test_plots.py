"""PNG plots (DVC outputs, so byte-reproducible) and the offline check of DVC's plots page."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dvc_render.html import render_html
from dvc_render.image import ImageRenderer
from dvc_render.vega import VegaRenderer
from PIL import Image

from occlufer.evaluation import plots
from tests.offline_page import check_offline_page


def _history(epochs: int = 6, shift: float = 0.0) -> pd.DataFrame:
    e = np.arange(1, epochs + 1)
    return pd.DataFrame({"epoch": e, "train/loss": 2.0 / e + shift, "train/acc": 0.2 + 0.1 * e,
                         "val/loss": 2.2 / e, "val/acc": 0.15 + 0.08 * e,
                         "val_occluded/acc": 0.1 + 0.05 * e, "lr": 1e-3})


def _curves(shift: float = 0.0) -> pd.DataFrame:
    ratio = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
    return pd.DataFrame({"ratio": ratio, "block": 0.7 - ratio, "mask": 0.7 - 1.2 * ratio + shift,
                         "hand": 0.7 - 0.5 * ratio})


def _reliability(shift: float = 0.0) -> dict[str, pd.DataFrame]:
    conf = np.array([0.25, 0.45, 0.65, 0.85])
    return {"val": pd.DataFrame({"confidence": conf, "accuracy": conf - 0.1 + shift}),
            "val_occluded": pd.DataFrame({"confidence": conf[:3], "accuracy": conf[:3] - 0.2})}


#: name -> (draw(path, shift), (width, height) in pixels: figsize × dpi)
FIGURES: dict[str, tuple[Callable[[Path, float], None], tuple[int, int]]] = {
    "training": (lambda p, s: plots.training_png(_history(shift=s), p), (900, 350)),
    "robustness": (lambda p, s: plots.robustness_png(_curves(s), {"block": 0.5, "mask": 0.4}, p),
                   (700, 450)),
    "reliability": (lambda p, s: plots.reliability_png(_reliability(s), {"val": 0.1}, p),
                    (500, 500)),
}


def _png_chunks(blob: bytes) -> list[bytes]:
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(blob):
        size = int.from_bytes(blob[at:at + 4], "big")
        chunks.append(blob[at + 4:at + 8])
        at += 12 + size
    return chunks


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_is_a_reproducible_png_of_the_data(name: str, tmp_path: Path) -> None:
    draw, size = FIGURES[name]
    a, b, other = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "other.png"
    draw(a, 0.0)
    draw(b, 0.0)
    draw(other, 0.05)
    blob = a.read_bytes()
    assert blob == b.read_bytes()          # same data, same bytes (a DVC output)
    assert blob != other.read_bytes()      # ... and the data is what is drawn
    assert 5_000 < len(blob) < 1_000_000
    chunks = _png_chunks(blob)
    assert not {b"tEXt", b"iTXt", b"zTXt", b"tIME"} & set(chunks)  # no version, no date
    assert b"atplotlib" not in blob
    with Image.open(a) as img:
        img.verify()
    with Image.open(a) as img:
        assert img.format == "PNG" and img.size == size
        gray = np.asarray(img.convert("L"))
    assert 0.01 < (gray < 200).mean() < 0.5  # lines and text on a white background


def test_user_matplotlib_settings_do_not_change_the_png(tmp_path: Path) -> None:
    import matplotlib
    from cycler import cycler

    draw, _ = FIGURES["robustness"]
    draw(tmp_path / "plain.png", 0.0)
    with matplotlib.rc_context({"lines.linewidth": 4, "font.size": 17, "axes.grid": True,
                                "axes.prop_cycle": cycler(color=["red", "black"])}):
        draw(tmp_path / "styled.png", 0.0)
    assert (tmp_path / "styled.png").read_bytes() == (tmp_path / "plain.png").read_bytes()


def test_same_bytes_in_a_fresh_process(tmp_path: Path) -> None:
    """Nothing in the file depends on the process (hash seed, import order, fonts cached)."""
    plots.training_png(_history(), tmp_path / "here.png")
    _history().to_csv(tmp_path / "history.csv", index=False)
    code = ("import sys, pandas as pd; from pathlib import Path; "
            "from occlufer.evaluation.plots import training_png; "
            "training_png(pd.read_csv(sys.argv[1]), Path(sys.argv[2]))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "history.csv"),
                    str(tmp_path / "there.png")], check=True, env=env, timeout=120)
    assert (tmp_path / "there.png").read_bytes() == (tmp_path / "here.png").read_bytes()


def test_training_png_draws_what_the_history_has(tmp_path: Path) -> None:
    """Old histories lack columns, a run without occluded val faces has NaN there; an empty
    history draws empty axes. None of it warns (no empty legends)."""
    partial = _history()[["epoch", "train/loss", "train/acc"]].assign(
        **{"val_occluded/acc": np.nan})
    plots._plt()  # pyplot imported outside the strict block (its own imports may warn)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.training_png(partial, tmp_path / "partial.png")
        plots.training_png(_history().iloc[:0], tmp_path / "empty.png")
    plots.training_png(_history(), tmp_path / "full.png")
    blobs = {p: (tmp_path / f"{p}.png").read_bytes() for p in ("partial", "empty", "full")}
    assert len(set(blobs.values())) == 3
    for blob in blobs.values():
        with Image.open(io.BytesIO(blob)) as img:
            assert img.size == (900, 350)


# -- check_offline_page, on pages written by DVC's own renderer (dvc_render) -----------------

def _png(tmp_path: Path) -> Path:
    path = tmp_path / "plot.png"
    if not path.exists():
        plots.training_png(_history(), path)
    return path


def _page(tmp_path: Path, *renderers: object, template: str | None = None) -> Path:
    out = tmp_path / "dvc_plots" / "index.html"
    path = None
    if template is not None:  # as `dvc plots show --html-template FILE` passes it
        path = tmp_path / "template.html"
        path.write_text(template, encoding="utf-8")
    render_html(list(renderers), out, html_template=path)
    return out


def _images(*srcs: str) -> ImageRenderer:
    return ImageRenderer([{"rev": f"r{i}", "src": s} for i, s in enumerate(srcs)], "plot.png")


def _vega() -> VegaRenderer:
    return VegaRenderer([{"epoch": 1, "acc": 0.5, "rev": "workspace"}], "history.csv",
                        x="epoch", y="acc", template="linear")


def test_image_plots_page_renders_offline(tmp_path: Path) -> None:
    png = _png(tmp_path)
    static = tmp_path / "dvc_plots" / "static"
    static.mkdir(parents=True)
    (static / "workspace_plot.png").write_bytes(png.read_bytes())
    inline = "data:image;base64," + base64.b64encode(png.read_bytes()).decode()
    # DVC writes absolute paths into the datapoints and makes them relative to the page
    page = check_offline_page(_page(tmp_path, _images(str(static / "workspace_plot.png"),
                                                      inline, png.as_uri())))
    assert page.ok, page.problems
    assert (page.images, page.charts) == (3, 0)


def test_vega_plots_page_needs_the_network(tmp_path: Path) -> None:
    page = check_offline_page(_page(tmp_path, _images(str(_png(tmp_path))), _vega()))
    assert not page.ok
    assert page.images == 1 and page.charts == 1
    assert any("https://cdn.jsdelivr.net/npm/vega@" in p for p in page.problems)
    assert any("no local copy of the library" in p for p in page.problems)


def test_vega_chart_with_a_bundled_library_passes(tmp_path: Path) -> None:
    """A custom ``--html-template`` that inlines Vega instead of ``{scripts}`` would do."""
    bundle = "window.vegaEmbed = function () {};" + "/* vega */" * 6_000
    template = (f"<html><head><script>{bundle}</script></head>"
                "<body>{plot_divs}</body></html>")
    page = check_offline_page(_page(tmp_path, _vega(), template=template))
    assert page.ok, page.problems
    assert page.charts == 1


@pytest.mark.parametrize(("src", "problem"), [
    ("static/gone.png", "no such file"),
    ("data:image;base64,AAAA", "not a readable image"),
    ("data:image;base64,%%%", "not valid base64"),
    ("data:text/html;base64,AAAA", "not an image"),
    ("https://example.org/a.png", "from the network"),
])
def test_broken_or_remote_images_are_problems(tmp_path: Path, src: str, problem: str) -> None:
    page = check_offline_page(_page(tmp_path, _images(src)))
    assert page.images == 0
    assert len(page.problems) == 1 and problem in page.problems[0], page.problems


def test_not_an_image_file_is_a_problem(tmp_path: Path) -> None:
    fake = tmp_path / "fake.png"
    fake.write_text("not a png")
    page = check_offline_page(_page(tmp_path, _images(str(fake))))
    assert page.images == 0 and "not a readable image" in page.problems[0]


def test_remote_stylesheets_and_css_urls_are_problems(tmp_path: Path) -> None:
    template = ('<html><head><link rel="stylesheet" href="//x.org/a.css">'
                "<style>body {background: url('http://x.org/bg.png')}</style></head>"
                '<body style="background: url(file:///tmp/ok.png)">{plot_divs}</body></html>')
    page = check_offline_page(_page(tmp_path, _images(str(_png(tmp_path))),
                                    template=template))
    assert page.images == 1
    assert len(page.problems) == 2, page.problems  # file:// is local
    assert any("//x.org/a.css" in p for p in page.problems)  # protocol-relative
    assert any("http://x.org/bg.png" in p for p in page.problems)
