"""The report in a real browser: `geal run --report`, then headless Chromium shows it.

Chromium is driven with its own command-line switches only: ``--dump-dom`` gives the DOM
after the load event, in which the page has written how many of its thumbnails decoded
and have a size on screen; ``--enable-logging=stderr`` prints every console message
(uncaught errors included); ``--screenshot`` saves what a user would see.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from fakes import make_folder_pool
from geal.cli import main
from geal.report import check_in_browser

BUDGET = 8
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def find_chromium() -> str | None:
    for name in (os.environ.get("GEAL_CHROMIUM"), "chromium", "chromium-browser"):
        if name and (found := shutil.which(name)):
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no chromium binary found (Debian: apt-get install chromium, "
        "or set GEAL_CHROMIUM to a Chromium/Chrome binary)",
    ),
]


def chromium(profile: Path, *args: str) -> tuple[str, str]:
    """Run headless Chromium with a fresh profile; (stdout, stderr)."""
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("chromium did not finish in 90 s")
    assert proc.returncode == 0, err[-2000:]
    return out, err


def open_page(html: Path, profile: Path) -> tuple[dict[str, str], str, list[str]]:
    """(data-* of <html> after load, the DOM, console messages) of a local page."""
    dom, log = chromium(
        profile, "--enable-logging=stderr", "--v=0", "--dump-dom", html.resolve().as_uri()
    )
    tag = re.search(r"<html\b([^>]*)>", dom)
    assert tag, dom[:500]
    data = dict(re.findall(r'\sdata-([\w-]+)="([^"]*)"', tag.group(1)))
    console = [line for line in log.splitlines() if ":CONSOLE" in line]
    return data, dom, console


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    make_folder_pool(tmp / "pool", 24, classes=["cat", "dog", "fish"])
    mp = pytest.MonkeyPatch()
    mp.setenv("GEAL_CACHE_DIR", str(tmp / "cache"))
    try:
        code = main(
            [
                "run",
                str(tmp / "pool"),
                "--model",
                "test_vit",
                "--weights",
                "random",
                "--budget",
                str(BUDGET),
                "--out",
                str(tmp / "sel"),
                "--report",
                "-q",
            ]
        )
    finally:
        mp.undo()
    assert code == 0
    return tmp / "sel" / "report.html"


def test_every_pick_renders_without_console_errors(report: Path, tmp_path: Path) -> None:
    data, dom, console = open_page(report, tmp_path / "profile")
    assert dom.count('<figure class="pick"') == BUDGET
    assert dom.count('<figure class="random"') == BUDGET
    # the page counted, after load, thumbnails that decoded and have a size on screen
    assert data["picks"] == data["picks-shown"] == str(BUDGET)
    assert data["random"] == data["random-shown"] == str(BUDGET)
    assert console == []  # the page logs nothing; any line is an error or a stray log
    assert int(data["load-ms"]) < 2000


def test_the_check_catches_a_broken_thumbnail_and_a_script_error(
    report: Path, tmp_path: Path
) -> None:
    page = report.read_text(encoding="utf-8")
    first = page.index('<figure class="pick"')
    src = page.index('src="data:image/jpeg;base64,', first)
    end = page.index('"', src + 5)
    broken = page[:src] + 'src="data:image/jpeg;base64,/9j/AAAA' + page[end:]
    broken = broken.replace("</body>", "<script>notDefinedAnywhere();</script></body>")
    path = report.with_name("broken.html")
    path.write_text(broken, encoding="utf-8")
    data, _, console = open_page(path, tmp_path / "profile")
    assert data["picks"] == str(BUDGET)
    assert data["picks-shown"] == str(BUDGET - 1)
    assert any("Uncaught" in line and "notDefinedAnywhere" in line for line in console)
    # the check behind `geal report --screenshot` sees the same
    seen = check_in_browser(path)
    assert not seen.ok
    assert (seen.picks, seen.picks_shown, seen.random_shown) == (BUDGET, BUDGET - 1, BUDGET)
    assert any("notDefinedAnywhere" in line for line in seen.console)


def test_screenshot(report: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = ARTIFACTS / "report_browser.png"
    assert main(["report", str(report.parent), "--screenshot", str(png), "-q"]) == 0
    with Image.open(png) as im:
        assert im.size == (1280, 2000)
        colours = im.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50  # a rendered page, not a blank one
    with capsys.disabled():
        print(f"\nreport screenshot: {png}")
