"""``geal demo``: the main job on a real pool that installs offline, with a report.

:func:`run_demo` opens a demo pool (:mod:`geal.demo.pools`), extracts it with
EfficientNet-Lite0's packaged ImageNet weights, selects, exports, and writes
``report.png`` and ``report.md`` (:mod:`geal.demo.report`) comparing the selection's
coverage (:mod:`geal.demo.coverage`) with random picks of the same size.
"""

from geal.demo.coverage import Coverage, coverage, random_coverages, random_pick, totals
from geal.demo.pools import DEMO_POOLS, open_demo_pool
from geal.demo.run import DEFAULT_BUDGET, DemoResult, run_demo

__all__ = [
    "DEFAULT_BUDGET",
    "DEMO_POOLS",
    "Coverage",
    "DemoResult",
    "coverage",
    "open_demo_pool",
    "random_coverages",
    "random_pick",
    "run_demo",
    "totals",
]
