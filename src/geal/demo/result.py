"""What ``geal demo`` did and found: the one record its CLI output and reports are made from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geal.demo.coverage import Coverage, median_coverage
from geal.pools.base import Pool


@dataclass
class DemoResult:
    """What a demo run did and found; the CLI prints it, ``report.md`` records it.

    ``random_selection`` is the random pick ``report.html`` shows too (seed
    ``random_seed``); ``random_runs`` are the coverages of it and the picks of the next
    seeds.
    """

    pool_name: str
    pool: Pool
    budget: int
    strategy: str
    seed: int
    model: str
    stage: int | None
    device: str
    selection: np.ndarray
    random_selection: np.ndarray
    random_seed: int
    selected: Coverage
    random: Coverage
    random_runs: list[Coverage]
    total: Coverage
    timings: dict[str, float]
    out: Path
    bank: Path
    files: list[Path] = field(default_factory=list)

    @property
    def pool_size(self) -> int:
        return len(self.pool)

    @property
    def random_median(self) -> tuple[float, float]:
        return median_coverage(self.random_runs)

    @property
    def report_png(self) -> Path:
        return self.out / "report.png"

    @property
    def report_md(self) -> Path:
        return self.out / "report.md"

    @property
    def report_html(self) -> Path:
        return self.out / "report.html"
