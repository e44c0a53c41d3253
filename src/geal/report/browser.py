"""A report in headless Chromium: does every thumbnail render, and what does the page look like.

:func:`check_in_browser` opens a report and counts the thumbnails that really decoded
and have a size on screen; :func:`screenshot` saves a picture of it (``geal report DIR
--screenshot PNG``, e.g. for the documentation). Only the browser's own command-line
switches are used (``--dump-dom``, ``--screenshot``, ``--enable-logging``), so nothing
beyond a Chromium binary is needed and nothing is downloaded. Every run gets a fresh
profile directory, which is removed afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from geal.errors import GealError

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

# No network, no background services, no first-run UI: the page is all that runs.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
)

_CONSOLE = re.compile(r":CONSOLE[^\]]*\]\s*(.*)$")
_HTML_TAG = re.compile(r"<html\b([^>]*)>", re.IGNORECASE)
_DATA_ATTR = re.compile(r'\sdata-([\w-]+)="([^"]*)"')


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary: ``$GEAL_CHROMIUM``, else the first on ``PATH``."""
    env = os.environ.get("GEAL_CHROMIUM")
    if env:
        return env if Path(env).exists() else shutil.which(env)
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageLoad:
    """What a page showed after its load event.

    Attributes:
        dom: the serialised DOM after the page's scripts ran.
        data: the ``data-*`` attributes of ``<html>`` (how a page reports on itself).
        console: every console message the page produced, uncaught errors included.
        seconds: wall time of the browser run.
    """

    dom: str
    data: dict[str, str] = field(default_factory=dict)
    console: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def errors(self) -> list[str]:
        """Console lines that report a script error."""
        return [c for c in self.console if "Uncaught" in c or "Error" in c]


def _run(args: list[str], chromium: str | None, timeout: float) -> tuple[str, str, float]:
    binary = chromium or find_chromium()
    if not binary:
        raise GealError(
            "no Chromium found; install it (Debian: apt-get install chromium) "
            "or set GEAL_CHROMIUM to its path"
        )
    with tempfile.TemporaryDirectory(
        prefix="geal-chromium-", ignore_cleanup_errors=True
    ) as profile:
        cmd = [binary, *FLAGS, f"--user-data-dir={profile}", *args]
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,  # so a hung browser and its helpers die together
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise GealError(f"Chromium did not finish within {timeout:.0f} s") from None
        seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = " | ".join(err.strip().splitlines()[-3:])
        raise GealError(f"Chromium exited with status {proc.returncode}: {tail}")
    return out, err, seconds


def load_page(html: str | Path, *, chromium: str | None = None, timeout: float = 60) -> PageLoad:
    """Open a local page headless and return its DOM after load, and its console output."""
    url = Path(html).resolve().as_uri()
    out, err, seconds = _run(
        ["--enable-logging=stderr", "--v=0", "--dump-dom", url], chromium, timeout
    )
    data: dict[str, str] = {}
    tag = _HTML_TAG.search(out)
    if tag:
        data = dict(_DATA_ATTR.findall(tag.group(1)))
    console = [m.group(1) for line in err.splitlines() if (m := _CONSOLE.search(line))]
    return PageLoad(out, data, console, seconds)


def screenshot_page(
    html: str | Path,
    png: str | Path,
    *,
    size: tuple[int, int] = (1280, 2000),
    chromium: str | None = None,
    timeout: float = 60,
) -> Path:
    """Render a local page headless at ``size`` (width, height) and save it as PNG."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    url = Path(html).resolve().as_uri()
    _run(
        [f"--screenshot={png}", f"--window-size={size[0]},{size[1]}", url],
        chromium,
        timeout,
    )
    if not png.exists():
        raise GealError(f"Chromium wrote no screenshot to {png}")
    return png


@dataclass
class BrowserCheck:
    """What headless Chromium showed of a report (see :func:`check_in_browser`)."""

    picks: int
    picks_shown: int
    random: int
    random_shown: int
    load_ms: int
    console: list[str]

    @property
    def ok(self) -> bool:
        """Every thumbnail decoded and on screen, and the page logged nothing."""
        return (
            self.picks == self.picks_shown and self.random == self.random_shown and not self.console
        )


def check_in_browser(html_path: str | Path, *, chromium: str | None = None) -> BrowserCheck:
    """Open a report in headless Chromium and count the thumbnails that really rendered.

    The page counts, once loaded, its thumbnails that decoded and have a size on screen
    and writes the counts on ``<html>``; this reads them from the DOM Chromium dumps,
    with every console message the page produced.
    """
    page = load_page(html_path, chromium=chromium)
    if "picks" not in page.data:
        raise GealError(f"{html_path} did not report on itself in the browser; is it a report?")

    def num(key: str) -> int:
        return int(page.data.get(key, "0") or 0)

    return BrowserCheck(
        num("picks"),
        num("picks-shown"),
        num("random"),
        num("random-shown"),
        num("load-ms"),
        page.console,
    )


def screenshot(
    html_path: str | Path,
    png: str | Path,
    *,
    size: tuple[int, int] = (1280, 2000),
    colours: int | None = 256,
    check: bool = True,
    chromium: str | None = None,
) -> Path:
    """Render a report in headless Chromium and save a PNG of the top of the page.

    Args:
        size: browser window (width, height) in pixels; the picture has this size.
        colours: reduce the PNG to this many colours (a ~3x smaller file for docs);
            ``None`` keeps full colour.
        check: first make sure every thumbnail renders and the page logs no error
            (:func:`check_in_browser`); a broken page raises :class:`GealError`.
        chromium: the browser binary (default ``$GEAL_CHROMIUM`` or the first on PATH).
    """
    from PIL import Image

    if check:
        seen = check_in_browser(html_path, chromium=chromium)
        if not seen.ok:
            raise GealError(
                f"{html_path} renders {seen.picks_shown} of {seen.picks} picked and "
                f"{seen.random_shown} of {seen.random} random thumbnails"
                + (f"; console: {seen.console[0]}" if seen.console else "")
            )
    out = screenshot_page(html_path, png, size=size, chromium=chromium)
    if colours:
        with Image.open(out) as im:
            small = im.convert("RGB").quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
        small.save(out, format="PNG", optimize=True)
    return out
