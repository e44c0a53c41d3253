"""The ranking type and the sampler registry.

A sampler is a plain function ``(bank, budget, *, seed, labeled, distance, **options)
-> Ranking`` registered under a name. A ranking lists pool indices in the order the
sampler picked them; the selection for any budget n is its first n entries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from geal.errors import SelectionError

if TYPE_CHECKING:
    from geal.bank import PatternBank


@dataclass
class Ranking:
    """Pool indices in pick order, with the coverage radius after each pick.

    Attributes:
        order: int64 pool indices, no repeats, labeled images excluded.
        radius: float32, max over the pool's patterns of the distance to the nearest
            pattern of a picked (or labeled) image, measured after each pick; NaN where
            the sampler does not track it.
        strategy: registry name of the sampler.
        seed: the seed it ran with.
        params: every other setting that changes the result (JSON-ready).
        nested: True when every budget's selection is a prefix of a larger one's
            (greedy samplers); False for samplers that solve each budget afresh, in
            which case ``order`` is only valid for ``len(order)``.
    """

    order: np.ndarray
    radius: np.ndarray
    strategy: str
    seed: int
    params: dict[str, Any] = field(default_factory=dict)
    nested: bool = True
    why_not_nested: str | None = None

    def __post_init__(self) -> None:
        self.order = np.asarray(self.order, dtype=np.int64)
        self.radius = np.asarray(self.radius, dtype=np.float32)
        if self.radius.shape != self.order.shape:
            raise ValueError("order and radius must have the same length")

    def __len__(self) -> int:
        return int(self.order.shape[0])

    def selection(self, budget: int | None = None) -> np.ndarray:
        """Pool indices of the first ``budget`` picks (all when ``None``)."""
        if budget is None:
            return self.order.copy()
        if budget > len(self):
            raise SelectionError(f"the ranking holds {len(self)} picks; budget {budget} asked")
        if not self.nested and budget != len(self):
            raise SelectionError(
                f"strategy {self.strategy!r} does not nest budgets; run it with budget {budget}"
            )
        return self.order[:budget].copy()


class Sampler(Protocol):
    def __call__(
        self,
        bank: PatternBank,
        budget: int,
        *,
        seed: int = 0,
        labeled: Sequence[int] | None = None,
        distance: str = "cosine",
        **options: Any,
    ) -> Ranking: ...


SAMPLERS: dict[str, Sampler] = {}


def register_sampler(name: str) -> Callable[[Sampler], Sampler]:
    """Decorator adding a sampler function to :data:`SAMPLERS` under ``name``."""

    def wrap(fn: Sampler) -> Sampler:
        if name in SAMPLERS:
            raise ValueError(f"sampler {name!r} registered twice")
        SAMPLERS[name] = fn
        return fn

    return wrap
