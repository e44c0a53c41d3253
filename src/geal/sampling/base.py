"""The ranking type, run settings, typed sampler parameters and the sampler registry.

A sampler is a plain function ``(bank, budget, *, seed, labeled, distance, params, run)
-> Ranking`` registered under a name with the frozen dataclass of its hyperparameters.
Two kinds of settings never travel together:

- :class:`RunSettings` says how a selection runs (device, memory chunk, pruning,
  progress, resumable journal). None of them changes a ranking.
- a sampler's :class:`SamplerParams` subclass holds its hyperparameters, validated once
  when built; an unknown name is an error, never silently ignored (the way
  scikit-activeml's strategies and timm's ``create_model`` treat their arguments).

A ranking lists pool indices in the order the sampler picked them; the selection for
any budget n is its first n entries when the sampler nests budgets.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np

from geal.coverage import DEFAULT_CHUNK, DISTANCES, PRUNE_CHOICES
from geal.errors import SelectionError
from geal.internal.memory import available_bytes, gib
from geal.internal.registry import Registry
from geal.internal.validation import check_choice, check_scalar

log = logging.getLogger(__name__)

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
        why_not_nested: for a sampler that does not nest, the reason, in one sentence.
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


@dataclass(frozen=True)
class RunSettings:
    """How a selection runs; none of these settings changes the ranking.

    Attributes:
        device: where distance updates run: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``
            (used by ``prob``, ``fds`` and ``kcenter``; the others run on the CPU).
        chunk: rows per block of a distance product, which bounds the memory of every
            sampler's temporaries (at most ``chunk`` x ``chunk`` floats).
        prune: exact pruned coverage updates for ``prob``/``fds``: ``auto``, ``on`` or
            ``off`` (see :func:`geal.coverage.make_coverage`).
        progress: progress display: None (a bar on a terminal, periodic log lines
            elsewhere), True (always a bar) or False (nothing).
        journal: file the sequential samplers append their picks to, so an interrupted
            selection resumes; None keeps no journal.
        journal_key: fields identifying the selection in the journal's header (e.g. the
            bank's hash), so a journal of another selection is never replayed.
    """

    device: str = "cpu"
    chunk: int = DEFAULT_CHUNK
    prune: str = "auto"
    progress: bool | None = None
    journal: Path | None = None
    journal_key: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        from geal.internal.device import resolve_device

        resolve_device(self.device)  # an unknown or absent device: one line, now
        check_scalar(self.chunk, "--chunk", int, min_val=1, error=SelectionError)
        check_choice(self.prune, "--prune", PRUNE_CHOICES, error=SelectionError)


@dataclass(frozen=True)
class BankShape:
    """What a sampler's memory depends on: images, patterns, dimension, labeled images."""

    n: int
    patterns: int
    dim: int
    labeled: int = 0


@dataclass(frozen=True)
class SamplerParams:
    """Hyperparameters of one sampler: subclasses are frozen dataclasses that check their
    values in ``__post_init__``. This base has none (``random``, ``fds``, ``prob``...)."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


P = TypeVar("P", bound=SamplerParams)


class SamplerFn(Protocol[P]):  # type: ignore[misc]
    def __call__(
        self,
        bank: PatternBank,
        budget: int,
        *,
        seed: int,
        labeled: Sequence[int] | None,
        distance: str,
        params: P,
        run: RunSettings,
    ) -> Ranking: ...


MemoryFn = Callable[[BankShape, int, Any, RunSettings], int]


def no_memory(shape: BankShape, budget: int, params: Any, run: RunSettings) -> int:
    """The estimate of a sampler that holds nothing worth counting."""
    return 0


@dataclass(frozen=True)
class Sampler(Generic[P]):
    """A registered sampler: its function, the dataclass of its hyperparameters and the
    estimate of the memory it needs.

    Calling it (``SAMPLERS["strata"](bank, 20, seed=0, pick="centre")``) validates the
    hyperparameters given as keywords, refuses up front when the memory it would need
    exceeds what the machine has, then runs the function.
    """

    name: str
    fn: Callable[..., Ranking]
    params_type: type[P]
    memory: MemoryFn = no_memory

    def memory_bytes(
        self, shape: BankShape, budget: int, params: P | None = None, run: RunSettings | None = None
    ) -> int:
        """About the peak bytes a selection of ``budget`` takes beyond the bank itself."""
        return int(self.memory(shape, budget, params or self.params(), run or RunSettings()))

    def check_memory(self, shape: BankShape, budget: int, params: P, run: RunSettings) -> None:
        """Refuse with one line when the estimate exceeds the available memory."""
        need = self.memory_bytes(shape, budget, params, run)
        have = available_bytes()
        if have is not None and need > have:
            raise SelectionError(
                f"strategy {self.name!r} needs about {gib(need)} for {shape.n:,} images "
                f"({shape.patterns:,} patterns of {shape.dim} dims) and budget {budget:,}, "
                f"but {gib(have)} is available; lower --chunk (now {run.chunk:,}) or use "
                "another strategy (docs/scale.md lists each one's memory)"
            )

    def params(self, **values: Any) -> P:
        """The validated hyperparameters; an unknown name is a :class:`SelectionError`."""
        known = [f.name for f in dataclasses.fields(self.params_type)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            legal = ", ".join(known) if known else "none"
            raise SelectionError(
                f"strategy {self.name!r} has no option {unknown[0]!r} (its options: {legal})"
            )
        return self.params_type(**values)

    def parse_options(self, pairs: Sequence[str]) -> dict[str, Any]:
        """``["pick=objects", "n_init=5"]`` (the command line's ``--option``) -> the
        values, typed as the defaults are and validated; a bad one is a one-line
        :class:`SelectionError`."""
        texts: dict[str, str] = {}
        for pair in pairs:
            key, sep, text = pair.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or not key:
                raise SelectionError(f"--option {pair!r}: write NAME=VALUE, e.g. pick=objects")
            texts[key] = text.strip()
        defaults = self.params_type()
        self.params(**{k: getattr(defaults, k, None) for k in texts})  # unknown names: one line
        values = {k: _typed(k, t, getattr(defaults, k)) for k, t in texts.items()}
        self.params(**values)
        return values

    def __call__(
        self,
        bank: PatternBank,
        budget: int,
        *,
        seed: int = 0,
        labeled: Sequence[int] | None = None,
        distance: str = "cosine",
        run: RunSettings | None = None,
        **params: Any,
    ) -> Ranking:
        check_choice(distance, "--distance", DISTANCES, error=SelectionError)
        check_scalar(seed, "--seed", int, min_val=0, error=SelectionError)
        check_scalar(budget, "budget", int, error=SelectionError)
        hyper = self.params(**params)
        run = run or RunSettings()
        shape = BankShape(bank.n, bank.n_patterns, bank.dim, len(set(labeled or ())))
        self.check_memory(shape, budget, hyper, run)
        if (warning := scale_warning(self.name, bank.n, budget)) is not None:
            log.warning("%s", warning)
        return self.fn(
            bank,
            budget,
            seed=int(seed),
            labeled=labeled,
            distance=distance,
            params=hyper,
            run=run,
        )


SAMPLERS: Registry[Sampler[Any]] = Registry("strategy", error=SelectionError)

# Measured reference runs of the samplers whose work grows with images x budget: the
# largest each finished, (images, budget, CPU seconds) on 2 cores, synthetic banks of 5
# patterns x 384 dims (benchmarks/results/scale.json; docs/scale.md).
MEASURED_RUNS: dict[str, tuple[int, int, float]] = {
    "kcenter": (1_000_000, 10_000, 846),
    "probcover": (100_000, 10_000, 168),
    "typiclust": (100_000, 10_000, 66),
    "kmeans": (100_000, 10_000, 304),
    "activeft": (100_000, 10_000, 324),
    "kernelcover": (100_000, 10_000, 408),
}
_WARN_ABOVE = 3.0  # times the work of the measured run


def scale_warning(name: str, images: int, budget: int) -> str | None:
    """One line when ``name`` is asked for far more work than its measured run; None
    when it is not (or scales further: ``random``, ``strata``, ``prob``, ``fds``)."""
    ref = MEASURED_RUNS.get(name)
    if ref is None:
        return None
    n, b, cpu = ref
    times = images * budget / (n * b)
    if times <= _WARN_ABOVE:
        return None
    minutes = times * cpu / 60
    expect = f"{minutes:,.0f} CPU minutes" if minutes < 120 else f"{minutes / 60:,.1f} CPU hours"
    return (
        f"strategy {name!r} on {images:,} images with budget {budget:,} is about "
        f"{times:,.0f} times the work of a measured run ({n:,} images, budget {b:,}: "
        f"{cpu:,.0f} CPU s on 2 cores), so expect {expect} or more; strata, prob and fds "
        "select 10,000 of a million images in minutes (docs/scale.md)"
    )


def _typed(key: str, text: str, default: Any) -> Any:
    """``text`` as a value of ``default``'s type (None defaults: none, an int, a float)."""
    try:
        if isinstance(default, bool):
            return {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}[
                text.lower()
            ]
        if isinstance(default, int | float):
            return type(default)(text)
        if isinstance(default, str):
            return text
        if text.lower() in ("none", ""):
            return None
        return float(text) if any(c in text for c in ".eE") else int(text)
    except (KeyError, ValueError):
        kind = type(default).__name__ if default is not None else "number or none"
        raise SelectionError(f"--option {key}={text}: not a {kind}") from None


def register_sampler(
    name: str, params: type[SamplerParams] = SamplerParams, *, memory: MemoryFn = no_memory
) -> Callable[[Callable[..., Ranking]], Callable[..., Ranking]]:
    """Decorator adding a sampler function to :data:`SAMPLERS` under ``name``, with the
    dataclass of its hyperparameters and the estimate of its memory (bytes beyond the
    bank, see :class:`BankShape`)."""

    def wrap(fn: Callable[..., Ranking]) -> Callable[..., Ranking]:
        SAMPLERS.register(name, Sampler(name, fn, params, memory))
        return fn

    return wrap
