"""The jobs behind the CLI: extract (cached), select, export, as library functions.

The ``geal.cli`` package only parses arguments and prints; everything it runs lives
here (and in :mod:`geal.selection`, which owns the selection directory) so that a
notebook or a pipeline can do exactly what the command line does.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
    """Pool indices of the images a labeled file names, whatever geal-shaped list it is.

    Accepted: one image per line (``#`` comments allowed), each an image id, an image
    path (absolute, or relative to the working directory) or, for VOC, an id without its
    year when it is unique; geal's own outputs as written (``<name>_<n>.txt`` image lists,
    VOC image sets, ``ranking.csv``/``ranking_<n>.csv`` (its ``id`` column) and
    ``indices_<name>_<n>.json`` (pool indices)).

    Raises:
        SelectionError: naming the file and the first entry that is not in the pool.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise SelectionError(
            f"cannot read labeled file {p}: {getattr(e, 'strerror', None) or e}"
        ) from None
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SelectionError(f"labeled file {p} is not valid JSON: {e}") from None
        if not isinstance(data, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in data
        ):
            raise SelectionError(f"labeled file {p} must be a JSON list of pool indices")
        return labeled_indices(p, data, pool)
    lines = [ln.strip() for ln in text.splitlines()]
    entries = [ln for ln in lines if ln and not ln.startswith("#")]
    if p.suffix.lower() == ".csv" and entries:
        rows = list(csv.DictReader(io.StringIO("\n".join(entries))))
        header = rows[0].keys() if rows else []
        column = next((c for c in ("id", "path", "index") if c in header), None)
        if column is None:
            raise SelectionError(f"labeled file {p} has no id, path or index column")
        if column == "index":
            try:
                values = [int(r["index"]) for r in rows]
            except ValueError:
                raise SelectionError(f"labeled file {p} has a non-integer index") from None
            return labeled_indices(p, values, pool)
        entries = [r[column] for r in rows]
    by_path: dict[str, int] | None = None
    by_tail: dict[str, list[int]] | None = None
    out = []
    for entry in entries:
        try:
            out.append(pool.index_of(entry))
            continue
        except PoolError:
            pass
        if by_path is None:  # built once, only when an entry is not an id
            by_path = {
                str(Path(it.path).resolve()): i for i, it in enumerate(pool) if it.path is not None
            }
            by_tail = {}
            for i, it in enumerate(pool):
                by_tail.setdefault(it.id.rsplit("/", 1)[-1], []).append(i)
        assert by_tail is not None
        hit = by_path.get(str(Path(entry).expanduser().resolve()))
        if hit is None and len(by_tail.get(entry, [])) == 1:
            hit = by_tail[entry][0]
        if hit is None:
            raise SelectionError(f"labeled file {p} names {entry!r}, which is not in the pool")
        out.append(hit)
    return sorted(set(out))


def labeled_indices(p: Path, values: Sequence[int], pool: Pool) -> list[int]:
    """Sorted distinct pool indices of a labeled file, each checked to lie in the pool."""
    bad = [i for i in values if not 0 <= i < len(pool)]
    if bad:
        raise SelectionError(
            f"labeled file {p} lists index {bad[0]}, outside the pool (0..{len(pool) - 1})"
        )
    return sorted(set(values))


def preflight_exports(pool: Pool, to: Sequence[str], name: str = "geal") -> None:
    """Check, before any extraction, that every ``--to`` format can be written for
    ``pool``: each exporter writes a one-image selection into a throwaway folder, so a
    ``--to voc`` on a folder pool fails now, in one line, and not after the forward pass.
    """
    formats = check_formats(to, exclude=("csv",))
    if not formats or len(pool) == 0:
        return
    if any(f in ("voc", "mmdet") for f in formats) and pool.format == "voc":
        from geal.export.voc import check_annotations

        check_annotations(pool)  # a broken annotation anywhere: say so before extracting
    probe = Ranking(np.array([0], np.int64), np.full(1, np.nan, np.float32), "probe", 0)
    with tempfile.TemporaryDirectory(prefix="geal-preflight-") as tmp:
        for f in formats:
            EXPORTERS[f](pool, probe, 1, Path(tmp), name=name)


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
        bank_content_sha256=bank.content_sha256,
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
