"""Does `dvc plots show` (or `dvc plots diff`) render without a network? (issue #16)

    dvc repro                                    # first: the stages write the plots
    python benchmarks/plots_offline.py [--out dvc_plots] [--diff REV ...]

Runs `dvc plots show -o OUT` (with ``--diff``: `dvc plots diff REV ... -o OUT`) in this
repository, then:

- always: parses OUT/index.html (:func:`tests.offline_page.check_offline_page`): no
  script, image or stylesheet from another host (``http(s)://``), every ``<img>`` an existing
  file or inline data that decodes as an image, no Vega/Plotly chart without a local library;
  for `show`, every plot in dvc.yaml on the page;
- when a headless browser is found (the ``playwright`` package with its Chromium installed,
  else a ``chromium`` / ``google-chrome`` binary, else ``firefox``): opens the page with the
  network cut off (requests refused / host names unresolvable / a dead proxy) and saves a
  screenshot to OUT/offline.png; with playwright it also counts images that failed to load.

Prints what it found; exit status 1 when the page would not render offline.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.offline_page import check_offline_page  # noqa: E402 - test support, by path

CHROMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
WINDOW = (1280, 4000)  # tall enough for the whole page in one screenshot
TIMEOUT = 120


@dataclass
class Browsed:
    """What a headless browser saw with the network cut off."""

    browser: str
    screenshot: Path | None = None
    images: int | None = None                         # <img> on the page (playwright only)
    broken: list[str] = field(default_factory=list)   # <img> that did not load
    blocked: list[str] = field(default_factory=list)  # network requests it tried
    charts_drawn: int | None = None                   # Vega charts that rendered


def _dvc() -> str:
    local = Path(sys.executable).parent / "dvc"
    return str(local) if local.is_file() else "dvc"


def _playwright(html: Path, shot: Path) -> Browsed | None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    blocked: list[str] = []

    def route(r) -> None:  # noqa: ANN001 - playwright.sync_api.Route
        if r.request.url.startswith(("http://", "https://")):
            blocked.append(r.request.url)
            r.abort()
        else:
            r.continue_()

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch()
            try:
                page = browser.new_page(viewport={"width": WINDOW[0], "height": 900})
                page.route("**/*", route)
                page.goto(html.as_uri(), wait_until="load")
                page.wait_for_timeout(2000)  # vegaEmbed draws after load
                images = page.evaluate("() => document.images.length")
                broken = page.evaluate(
                    "() => Array.from(document.images)"
                    ".filter(i => !(i.complete && i.naturalWidth > 0))"
                    ".map(i => i.getAttribute('src').slice(0, 100))")
                drawn = page.evaluate(
                    "() => document.querySelectorAll('.vega-embed canvas, .vega-embed svg')"
                    ".length")
                page.screenshot(path=str(shot), full_page=True)
            finally:
                browser.close()
    except Exception as exc:  # noqa: BLE001 - e.g. its Chromium is not installed
        print(f"playwright: no browser ({str(exc).splitlines()[0][:160]})")
        return None
    return Browsed("playwright chromium", shot, images, broken, blocked, drawn)


def _chrome(binary: str, html: Path, shot: Path) -> Browsed:
    offline = ["--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
               "--host-resolver-rules=MAP * ~NOTFOUND",  # no host name resolves: offline
               f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=5000"]
    subprocess.run([binary, *offline, f"--screenshot={shot}", html.as_uri()],
                   capture_output=True, timeout=TIMEOUT, check=False)
    dom = subprocess.run([binary, *offline, "--dump-dom", html.as_uri()], capture_output=True,
                         text=True, timeout=TIMEOUT, check=False).stdout
    return Browsed(Path(binary).name, shot if shot.is_file() else None,
                   charts_drawn=dom.count('class="vega-embed'))


def _firefox(binary: str, html: Path, shot: Path) -> Browsed:
    with tempfile.TemporaryDirectory() as profile:
        # every http(s) request goes to a proxy that is not there: offline
        prefs = {"network.proxy.type": 1, "network.proxy.http": '"127.0.0.1"',
                 "network.proxy.http_port": 9, "network.proxy.ssl": '"127.0.0.1"',
                 "network.proxy.ssl_port": 9, "network.proxy.share_proxy_settings": "true"}
        (Path(profile) / "user.js").write_text(
            "".join(f'user_pref("{k}", {v});\n' for k, v in prefs.items()), encoding="utf-8")
        subprocess.run([binary, "--headless", "--no-remote", "--profile", profile,
                        "--screenshot", str(shot), f"--window-size={WINDOW[0]},{WINDOW[1]}",
                        html.as_uri()], capture_output=True, timeout=TIMEOUT, check=False)
    return Browsed(Path(binary).name, shot if shot.is_file() else None)


def browse(html: Path, shot: Path) -> Browsed | None:
    """The page in the first headless browser found, offline; None when there is none."""
    found = _playwright(html, shot)
    if found is not None:
        return found
    chrome = next((b for b in map(shutil.which, CHROMES) if b), None)
    if chrome:
        return _chrome(chrome, html, shot)
    firefox = shutil.which("firefox")
    return _firefox(firefox, html, shot) if firefox else None


def _ink(shot: Path) -> float:
    """Fraction of the screenshot that is not near-white (blank page: ~0)."""
    with Image.open(shot) as img:
        return float((np.asarray(img.convert("L")) < 240).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("dvc_plots"),
                        help="folder for the HTML page (relative to the repository)")
    parser.add_argument("--diff", nargs="*", metavar="REV",
                        help="run `dvc plots diff REV ...` instead of `dvc plots show`")
    args = parser.parse_args()
    out = args.out if args.out.is_absolute() else ROOT / args.out
    cmd = ([_dvc(), "plots", "diff", *args.diff] if args.diff is not None
           else [_dvc(), "plots", "show"]) + ["-o", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    html = out / "index.html"
    print(f"$ {' '.join(['dvc', *cmd[1:]])}\n{(proc.stdout + proc.stderr).strip()}")
    if proc.returncode or not html.is_file():
        sys.exit(f"`dvc plots` failed (exit {proc.returncode}); run `dvc repro` first?")

    problems: list[str] = []
    page = check_offline_page(html)
    problems += page.problems
    print(f"page: {page.images} images, {page.charts} JavaScript charts")
    if args.diff is None:
        listed = [p for p in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
                  if isinstance(p, str)]
        missing = [p for p in listed if not (ROOT / p).is_file()]
        print(f"dvc.yaml: {len(listed)} image plots, {len(listed) - len(missing)} on disk")
        problems += [f"{p}: not written yet (dvc repro)" for p in missing]
    if page.images == 0:
        problems.append("no image on the page")

    shot = out / "offline.png"
    shot.unlink(missing_ok=True)
    seen = browse(html, shot)
    if seen is None:
        print("browser: none found (playwright, chromium/google-chrome, firefox); "
              "checked the HTML only")
    else:
        ink = f", {100 * _ink(seen.screenshot):.1f}% non-white" if seen.screenshot else ""
        print(f"browser: {seen.browser}, offline; screenshot "
              f"{seen.screenshot or 'not written'}{ink}")
        if seen.images is not None:
            print(f"browser: {seen.images - len(seen.broken)} of {seen.images} images loaded")
        if seen.charts_drawn is not None and page.charts:
            print(f"browser: {seen.charts_drawn} of {page.charts} Vega charts drawn")
        problems += [f"<img> {src} did not load" for src in seen.broken]
        problems += [f"requested {url[:120]}" for url in seen.blocked]
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print(f"{'OFFLINE OK' if not problems else 'NOT OK'}: {html}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
