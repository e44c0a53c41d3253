"""The report in a real browser: `geal run --report`, then headless Chromium shows it.

Chromium is driven (through :mod:`geal.report.browser`, a fresh profile per run) with
its own command-line switches only: ``--dump-dom`` gives the DOM after the load event,
in which the page has written how many of its thumbnails decoded and have a size on
screen; ``--enable-logging=stderr`` prints every console message
(uncaught errors included); ``--screenshot`` saves what a user would see.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from fakes import make_folder_pool
from geal.cli import main
from geal.report import check_in_browser
from geal.report.browser import find_chromium, load_page

BUDGET = 8
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no chromium binary found (Debian: apt-get install chromium, "
        "or set GEAL_CHROMIUM to a Chromium/Chrome binary)",
    ),
]


def open_page(html: Path) -> tuple[dict[str, str], str, list[str]]:
    """(data-* of <html> after load, the DOM, console messages) of a local page."""
    page = load_page(html, chromium=CHROMIUM, timeout=90)
    assert page.data, page.dom[:500]
    return page.data, page.dom, page.console


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


def test_every_pick_renders_without_console_errors(report: Path) -> None:
    data, dom, console = open_page(report)
    assert dom.count('<figure class="pick"') == BUDGET
    assert dom.count('<figure class="random"') == BUDGET
    # the page counted, after load, thumbnails that decoded and have a size on screen
    assert data["picks"] == data["picks-shown"] == str(BUDGET)
    assert data["random"] == data["random-shown"] == str(BUDGET)
    assert console == []  # the page logs nothing; any line is an error or a stray log
    assert int(data["load-ms"]) < 2000


def test_the_check_catches_a_broken_thumbnail_and_a_script_error(
    report: Path,
) -> None:
    page = report.read_text(encoding="utf-8")
    first = page.index('<figure class="pick"')
    src = page.index('src="data:image/jpeg;base64,', first)
    end = page.index('"', src + 5)
    broken = page[:src] + 'src="data:image/jpeg;base64,/9j/AAAA' + page[end:]
    broken = broken.replace("</body>", "<script>notDefinedAnywhere();</script></body>")
    path = report.with_name("broken.html")
    path.write_text(broken, encoding="utf-8")
    data, _, console = open_page(path)
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
