"""The jobs behind the CLI: extract (cached), select, export, as library functions.

The ``geal.cli`` package only parses arguments and prints; everything it runs lives
here (and in :mod:`geal.selection`, which owns the selection directory) so that a
notebook or a pipeline can do exactly what the command line does.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geal.bank import PatternBank
from geal.errors import PoolError, SelectionError
from geal.export import EXPORTERS, check_formats
from geal.grid import DEFAULT_CHUNK
from geal.pools import Pool
from geal.sampling import DEFAULT_STRATEGY, SAMPLERS, Ranking, RunSettings, select
from geal.selection import (
    RANKING_CSV,
    check_out_dir,
    journal_path,
    open_selection_pool,
    read_selection,
    write_selection,
)

log = logging.getLogger(__name__)


def parse_budgets(budget: int | None, budgets: str | Sequence[int] | None) -> list[int]:
    """``--budget N`` and/or ``--budgets a,b,c`` -> sorted unique positive budgets."""
    out: set[int] = set()
    if budget is not None:
        out.add(int(budget))
    if budgets:
        items = budgets.split(",") if isinstance(budgets, str) else list(budgets)
        for b in items:
            try:
                out.add(int(str(b).strip()))
            except ValueError:
                raise SelectionError(
                    f"--budgets takes integers separated by commas, got {b!r}"
                ) from None
    if not out:
        raise SelectionError("give --budget N or --budgets N1,N2,...")
    if min(out) < 1:
        raise SelectionError("budgets must be positive")
    return sorted(out)


def read_labeled(path: str | Path, pool: Pool) -> list[int]:
    """Pool indices of the ids listed in ``path`` (one per line; ``#`` comments allowed)."""
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except OSError as e:
        raise SelectionError(f"cannot read labeled file {p}: {e.strerror or e}") from None
    ids = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    out = []
    for image_id in ids:
        try:
            out.append(pool.index_of(image_id))
        except PoolError:
            raise SelectionError(
                f"labeled file {p} names {image_id!r}, which is not in the pool"
            ) from None
    return out


@dataclass
class SelectionResult:
    """What :func:`run_selection` did.

    Attributes:
        rankings: the ranking of each budget (only the largest when it nests).
        files: every file written, ``selection.json`` last.
        seconds: time spent ranking.
        removed: files of an earlier selection at ``out`` that the new one replaced
            and does not have.
    """

    rankings: dict[int, Ranking]
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    removed: list[str] = field(default_factory=list)

    @property
    def ranking(self) -> Ranking:
        return self.rankings[max(self.rankings)]


def run_selection(
    bank: PatternBank,
    pool: Pool,
    out: str | Path,
    budgets: list[int],
    *,
    strategy: str = DEFAULT_STRATEGY,
    seed: int = 0,
    labeled: Sequence[int] | None = None,
    distance: str = "cosine",
    to: Sequence[str] = (),
    name: str = "geal",
    device: str = "cpu",
    chunk: int = DEFAULT_CHUNK,
    prune: str = "auto",
    progress: bool | None = None,
    extra: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> SelectionResult:
    """Rank the pool, then write the selection directory ``out`` (see :mod:`geal.selection`).

    Nested samplers run once at the largest budget and every smaller budget is a prefix;
    the others run once per budget and each budget keeps its own ranking. The largest
    budget's selection journals its picks beside ``out``, so an interrupted run resumes
    where it stopped; the journal is removed once the selection is written.
    """
    if strategy not in SAMPLERS:
        raise SelectionError(f"unknown strategy {strategy!r}; known: {', '.join(sorted(SAMPLERS))}")
    check_formats(to, exclude=("csv",))
    check_out_dir(out)
    t0 = time.perf_counter()
    journal = journal_path(out)
    run = RunSettings(device=device, chunk=chunk, prune=prune, progress=progress)
    logged = dataclasses.replace(run, journal=journal, journal_key={"bank": bank.manifest_hash()})
    params = dict(params or {})
    top = select(
        bank,
        budgets[-1],
        strategy,
        seed=seed,
        labeled=labeled,
        distance=distance,
        run=logged,
        **params,
    )
    rankings = {budgets[-1]: top}
    if not top.nested:
        for b in budgets[:-1]:
            rankings[b] = select(
                bank, b, strategy, seed=seed, labeled=labeled, distance=distance, run=run, **params
            )
    seconds = time.perf_counter() - t0
    info = {"select_seconds": round(seconds, 3), "labeled": len(labeled or [])}
    info.update(extra or {})
    written = write_selection(
        out,
        pool,
        rankings,
        budgets,
        to=to,
        name=name,
        bank_manifest_hash=bank.manifest_hash(),
        extra=info,
    )
    journal.unlink(missing_ok=True)
    return SelectionResult(rankings, written.files, seconds, written.removed)


def export_selection(
    selection_dir: str | Path,
    to: Sequence[str],
    *,
    budget: int | None = None,
    pool_path: str | Path | None = None,
    fmt: str = "auto",
    name: str = "geal",
    out: str | Path | None = None,
) -> list[Path]:
    """Write split files for a selection made earlier; return the files.

    Args:
        selection_dir: directory written by :func:`run_selection`.
        to: formats (registered exporters).
        budget: the budget to export (default: every budget of the selection).
        pool_path, fmt: the pool, if it moved since the selection (default: reopened
            from what ``selection.json`` records).
        name: name used in split file names.
        out: where to write (default: the selection directory). ``csv`` rewrites no
            file there: the directory holds the ranking of every budget already.
    """
    formats = check_formats(to)
    meta, _ = read_selection(selection_dir)
    budgets = [int(budget)] if budget else [int(b) for b in meta.get("budgets") or []]
    rankings = {b: read_selection(selection_dir, b)[1] for b in budgets}
    if not budgets:  # a selection.json without budgets: its whole ranking
        _, whole = read_selection(selection_dir)
        budgets, rankings = [len(whole)], {len(whole): whole}
    pool = open_selection_pool(meta, pool_path=pool_path, fmt=fmt)
    target = Path(out) if out is not None else Path(selection_dir)
    in_place = target.resolve() == Path(selection_dir).resolve()
    written: list[Path] = []
    for f in formats:
        if f == "csv":  # the ranking of the largest budget asked: that of every smaller one
            b = budgets[-1]
            if in_place:
                files = meta.get("rankings") or {}
                written.append(target / files.get(str(b), RANKING_CSV))
            else:
                written += EXPORTERS[f](pool, rankings[b], b, target, name=name)
            continue
        for b in budgets:
            written += EXPORTERS[f](pool, rankings[b], b, target, name=name)
    return written
