"""Golden banks and strategies: the rankings they give are pinned in golden/rankings.json.

Banks are synthetic and built from numpy seeds only (no model), so they are the same on
every machine; the cases cover every registered sampler, both distances, labeled sets,
several budgets and the pruned coverage engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geal.bank import PatternBank


def clustered_bank(seed: int, n: int, dim: int, kmax: int, modes: int) -> PatternBank:
    """Images around ``modes`` directions, 1..kmax patterns each, a global feature each."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((modes, dim))
    mode = rng.integers(0, modes, size=n)
    counts = rng.integers(1, kmax + 1, size=n)
    counts[rng.choice(n, size=max(1, n // 50), replace=False)] = 0  # unreadable images
    owner = np.repeat(np.arange(n), counts)
    pats = centres[mode[owner]] + 0.6 * rng.standard_normal((owner.size, dim))
    glob = centres[mode] + 0.4 * rng.standard_normal((n, dim))
    glob[counts == 0] = 0
    return PatternBank.from_arrays(pats.astype(np.float32), counts, glob.astype(np.float32))


BANKS = {
    "small": lambda: clustered_bank(1, 120, 8, 5, 6),
    "medium": lambda: clustered_bank(2, 900, 24, 4, 12),
}


@dataclass(frozen=True)
class Case:
    bank: str
    strategy: str
    budget: int
    seed: int = 0
    distance: str = "cosine"
    labeled: tuple[int, ...] = ()
    options: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def key(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        lab = "+".join(map(str, self.labeled))
        return (
            f"{self.bank}/{self.strategy}/b{self.budget}/s{self.seed}/{self.distance}/l{lab}/{opts}"
        )


STRATEGIES = (
    "strata", "prob", "fds", "kernelcover", "random", "kcenter", "kmeans", "typiclust",
    "probcover", "activeft",
)  # fmt: skip

CASES: list[Case] = []
for _bank, _budgets in (("small", (1, 7, 30)), ("medium", (5, 40, 150))):
    for _s in STRATEGIES:
        for _b in _budgets:
            CASES.append(Case(_bank, _s, _b))
        CASES.append(Case(_bank, _s, _budgets[1], seed=3, labeled=(4, 9, 17)))
        if _s not in ("kernelcover",):
            CASES.append(Case(_bank, _s, _budgets[1], seed=1, distance="euclidean"))
for _s in ("prob", "fds"):
    CASES.append(Case("medium", _s, 120, seed=2, options={"prune": "on"}))
    CASES.append(Case("medium", _s, 120, seed=2, options={"prune": "off"}))
CASES.append(Case("medium", "strata", 60, options={"pick": "centre"}))
CASES.append(Case("medium", "strata", 60, options={"pick": "margin"}))


def run_case(case: Case) -> dict[str, Any]:
    """The ranking of ``case`` as JSON: order, radius (as strings, exact) and nesting."""
    from geal.sampling import RunSettings, select

    bank = BANKS[case.bank]()
    opts = dict(case.options)
    run = RunSettings(prune=opts.pop("prune", "auto"), progress=False)
    r = select(
        bank,
        case.budget,
        case.strategy,
        seed=case.seed,
        labeled=list(case.labeled) or None,
        distance=case.distance,
        run=run,
        **opts,
    )
    return {
        "order": r.order.tolist(),
        "radius": [repr(float(x)) for x in r.radius],
        "nested": r.nested,
    }
