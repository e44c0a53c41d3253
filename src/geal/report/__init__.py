"""Selection reports: one self-contained HTML page that shows what was picked and why.

:func:`write_report` reads a selection directory with its bank and pool and writes
``report.html``: the picks in rank order with their coverage radius, a same-size random
pick for contrast, class (or source) counts, a 2-D map of the pool, the coverage-radius
curve and the run's settings and timings.

Thumbnails and plots are embedded as data URIs, so the one file can be mailed, attached
to an issue or kept as a CI artifact and still open offline without a server. That is
affordable because only the picks and the random pick get thumbnails (up to
``max_thumbs`` each, ~160 px JPEG, ~5-10 kB each) and the map draws at most
``max_points`` pool images into a PNG: a report stays a few MB even for a budget of
thousands on a pool of millions.

:func:`screenshot` renders a report in headless Chromium (``geal report DIR
--screenshot PNG``), e.g. for the picture in the documentation.

Modules: :mod:`~geal.report.data` (what the page shows, and the random pick the demo
shares), :mod:`~geal.report.plots` (matplotlib), :mod:`~geal.report.page` (the HTML),
:mod:`~geal.report.browser` (headless Chromium).
"""

from geal.report.browser import BrowserCheck, check_in_browser, screenshot
from geal.report.data import baseline_seed, knee, random_baseline, random_pick
from geal.report.page import (
    MAX_POINTS,
    MAX_ROWS,
    MAX_THUMBS,
    PROJECTIONS,
    REPORT,
    SIZE_BUDGET,
    THUMB_SIZE,
    write_report,
)

__all__ = [
    "MAX_POINTS",
    "MAX_ROWS",
    "MAX_THUMBS",
    "PROJECTIONS",
    "REPORT",
    "SIZE_BUDGET",
    "THUMB_SIZE",
    "BrowserCheck",
    "baseline_seed",
    "check_in_browser",
    "knee",
    "random_baseline",
    "random_pick",
    "screenshot",
    "write_report",
]
