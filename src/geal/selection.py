"""The selection directory: written whole or not at all, read back, its pool and bank reopened.

``geal select`` and ``geal run`` write a selection directory:

- ``ranking.csv``: the ranking of the largest budget (rank, index, id, path, radius);
- ``ranking_<budget>.csv``: for samplers that solve each budget afresh
  (``Ranking.nested`` is False), the ranking of every smaller budget;
- the split files asked with ``--to`` (see :mod:`geal.export`), for every budget;
- ``selection.json``: how the selection was made and which files it holds.

:func:`write_selection` builds the directory in a hidden temporary sibling and renames
it into place, so a reader sees the earlier selection or the new one, never a mix; an
earlier selection in the same place is replaced (and the files it held that the new
one lacks are named), anything else is refused. :func:`read_selection` reads back the
ranking of any budget, :func:`open_selection_pool` and :func:`open_selection_bank`
reopen what it was made from; ``geal export`` and ``geal report`` use these.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import secrets
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from geal._version import __version__
from geal.bank import PatternBank
from geal.errors import GealError, SelectionError
from geal.export import EXPORTERS, check_formats, write_ranking_csv
from geal.internal.io import atomic_write_text
from geal.pools import FORMATS, Pool, open_pool
from geal.sampling.base import Ranking

log = logging.getLogger(__name__)

SELECTION_JSON = "selection.json"
RANKING_CSV = "ranking.csv"
JOURNAL_SUFFIX = ".ranking.journal"


# ------------------------------------------------------------------------ the place


def check_out_dir(out: str | Path) -> Path:
    """Check that a selection may be written at ``out``; return its absolute path.

    Cheap (no pool, no bank), so a command can call it before a long extraction.
    Accepted: a path that does not exist yet, an empty directory, or a directory that
    holds an earlier selection (it has a ``selection.json``; it will be replaced).

    Raises:
        GealError: ``out`` (or a folder above it) is a file; ``out`` is a non-empty
            directory that holds no selection (it is never deleted); or ``out`` holds
            an earlier selection and contains the working directory (replacing it
            would pull the directory from under the caller).
    """
    target = Path(os.path.abspath(out))
    if target.is_symlink():
        target = target.resolve()
    if target.exists() and not target.is_dir():
        raise GealError(f"--out {out} is a file; give a directory for the selection")
    above = target.parent
    while not above.exists():
        above = above.parent
    if not above.is_dir():
        raise GealError(f"--out {out} cannot be created: {above} is a file")
    if target.is_dir() and any(target.iterdir()):
        if not (target / SELECTION_JSON).is_file():
            raise GealError(
                f"--out {out} is a directory that holds other files and no selection; "
                "give a new or empty directory (geal only replaces its own selections)"
            )
        cwd = Path.cwd().resolve()
        if cwd == target or target in cwd.parents:
            raise GealError(
                f"--out {out} holds the working directory; run from outside it to replace "
                "the selection there"
            )
    return target


def journal_path(out: str | Path) -> Path:
    """Where the resumable selection journal of ``out`` lives: a hidden file beside it.

    Outside the directory that is built and renamed into place, so it survives an
    interruption, and keyed by the directory's name, so a rerun with the same ``--out``
    finds it.
    """
    target = Path(os.path.abspath(out))
    return target.parent / f".{target.name}{JOURNAL_SUFFIX}"


def _hidden_sibling(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.{kind}-{secrets.token_hex(4)}"


def _files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir()}


def _put_in_place(built: Path, target: Path) -> list[str]:
    """Move the finished directory ``built`` to ``target``; the earlier files gone from it.

    A new or empty ``target`` receives the entries (``selection.json`` last, so a
    directory with one is complete). An earlier selection is renamed aside, ``built``
    renamed into its place (the earlier one is put back if that fails), then removed.
    """
    if not target.exists():
        os.rename(built, target)
        return []
    if not any(target.iterdir()):
        entries = sorted(built.iterdir(), key=lambda p: p.name == SELECTION_JSON)
        for entry in entries:
            os.rename(entry, target / entry.name)
        built.rmdir()
        return []
    removed = sorted(_files_under(target) - _files_under(built))
    aside = _hidden_sibling(target, "old")
    os.rename(target, aside)
    try:
        os.rename(built, target)
    except BaseException:
        os.rename(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    if removed:
        log.warning(
            "replaced the earlier selection in %s; removed its %s", target, ", ".join(removed)
        )
    return removed


# ------------------------------------------------------------------------ writing


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_selection_json(
    out_dir: str | Path,
    ranking: Ranking,
    budgets: int | Sequence[int],
    *,
    bank_manifest_hash: str | None,
    pool: Pool | None,
    extra: Mapping[str, Any] | None = None,
    files: Sequence[str | Path] = (),
    bank_content_sha256: str | None = None,
    ranking_files: Mapping[int, str] | None = None,
    params_by_budget: Mapping[int, dict[str, Any]] | None = None,
) -> Path:
    """Write ``<out_dir>/selection.json``: how the selection was made and what was written.

    Records strategy, seed, params, budgets, whether budgets nest, the hash of the bank
    manifest the ranking came from, the pool (``pool.describe()``), the package version,
    the UTC creation time and ``files`` (relative to ``out_dir`` when inside it).

    Args:
        ranking: the ranking of the largest budget.
        extra: more top-level fields; they may not replace the recorded ones.
        ranking_files: the ranking csv of each budget (``rankings``: budget -> file).
        params_by_budget: each budget's sampler params, for selections that do not nest
            (each budget was solved afresh and may have settled its options otherwise).
    """
    out = Path(out_dir)
    budget_list = sorted({int(b) for b in ([budgets] if isinstance(budgets, int) else budgets)})
    if budget_list and budget_list[-1] > len(ranking):
        ranking.selection(budget_list[-1])  # SelectionError: the ranking is too short
    listed = []
    for f in files:
        p = Path(f)
        try:
            listed.append(p.absolute().relative_to(out.absolute()).as_posix())
        except ValueError:
            listed.append(str(p.absolute()))
    doc: dict[str, Any] = {
        "strategy": ranking.strategy,
        "seed": ranking.seed,
        "params": ranking.params,
        "budgets": budget_list,
        "picks": len(ranking),
        "nested": ranking.nested,
        **({"why_not_nested": ranking.why_not_nested} if ranking.why_not_nested else {}),
        "bank_manifest_hash": bank_manifest_hash,
        "bank_content_sha256": bank_content_sha256,
        "pool": pool.describe() if pool is not None else None,
        "geal_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": listed,
    }
    if ranking_files:
        doc["rankings"] = {str(b): f for b, f in sorted(ranking_files.items())}
    if params_by_budget:
        doc["params_by_budget"] = {str(b): p for b, p in sorted(params_by_budget.items())}
    for key, value in (extra or {}).items():
        if key in doc:
            raise ValueError(f"extra field {key!r} would replace a recorded field")
        doc[key] = value
    target = out / SELECTION_JSON
    atomic_write_text(target, json.dumps(doc, indent=2, default=_json_default) + "\n")
    return target


@dataclass
class WrittenSelection:
    """What :func:`write_selection` did.

    Attributes:
        files: every file of the new selection, ``selection.json`` last.
        removed: files of an earlier selection at the same place that the new one does
            not have (relative to the directory); empty when there was none.
    """

    files: list[Path] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def write_selection(
    out: str | Path,
    pool: Pool,
    rankings: Mapping[int, Ranking],
    budgets: Sequence[int],
    *,
    to: Sequence[str] = (),
    name: str = "geal",
    bank_manifest_hash: str | None = None,
    extra: Mapping[str, Any] | None = None,
    bank_content_sha256: str | None = None,
) -> WrittenSelection:
    """Write the selection directory ``out`` whole, replacing an earlier selection there.

    Everything (ranking csv files, the split files of every format in ``to`` for every
    budget, ``selection.json``) is written into a hidden sibling folder first, which is
    renamed to ``out`` only once complete: if anything fails, ``out`` is left exactly as
    it was.

    Args:
        rankings: the ranking of each budget; a nested ranking of the largest budget
            serves every smaller one, which may then be left out.
        budgets: the budgets selected.
        to: split-file formats (registered exporters other than ``csv``).
        name: name used in split file names.
        bank_manifest_hash: hash of the manifest of the bank the rankings came from.
        extra: more fields for ``selection.json`` (timings, the bank's path, ...).

    Raises:
        GealError: ``out`` may not be written (see :func:`check_out_dir`), an unknown
            format, or an exporter refuses the pool.
    """
    budget_list = sorted({int(b) for b in budgets})
    if not budget_list:
        raise SelectionError("no budget to write")
    top = rankings[budget_list[-1]]
    for b in budget_list:
        if b not in rankings and not top.nested:
            raise SelectionError(
                f"strategy {top.strategy!r} does not nest budgets; budget {b} needs its own ranking"
            )
    formats = check_formats(to, exclude=("csv",))
    target = check_out_dir(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    built = _hidden_sibling(target, "tmp")
    built.mkdir()
    try:
        written = [write_ranking_csv(pool, top, built / RANKING_CSV)]
        ranking_files: dict[int, str] = {}
        params: dict[int, dict[str, Any]] = {}
        for b in budget_list:
            r = rankings.get(b, top)
            ranking_files[b] = RANKING_CSV if r is top else f"ranking_{b}.csv"
            if r is not top:
                written.append(write_ranking_csv(pool, r, built / ranking_files[b]))
            if not top.nested:
                params[b] = r.params
        for b in budget_list:
            for fmt in formats:
                exporter = EXPORTERS[fmt]
                written += exporter(
                    pool, rankings.get(b, top), b, built, name=name, final_dir=target
                )
        written.append(
            write_selection_json(
                built,
                top,
                budget_list,
                bank_manifest_hash=bank_manifest_hash,
                bank_content_sha256=bank_content_sha256,
                pool=pool,
                extra=extra,
                files=written,
                ranking_files=ranking_files,
                params_by_budget=params or None,
            )
        )
        removed = _put_in_place(built, target)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
    files = [Path(out) / p.relative_to(built) for p in written]
    return WrittenSelection(files, removed)


# ------------------------------------------------------------------------ reading


def _read_ranking_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    order = np.array([int(r["index"]) for r in rows], np.int64)
    radius = np.array([float(r["radius"]) if r["radius"] else np.nan for r in rows], np.float32)
    return order, radius


def read_selection(out: str | Path, budget: int | None = None) -> tuple[dict[str, Any], Ranking]:
    """Read back a selection directory: ``selection.json`` and the ranking of ``budget``.

    Args:
        budget: the budget whose ranking to return (default: the largest). A nested
            ranking serves every budget up to its length; a selection that does not
            nest holds one ranking per budget selected.

    Returns:
        The ``selection.json`` document and the ranking.

    Raises:
        GealError: no selection at ``out``, an unreadable one, or (``SelectionError``)
            a budget it does not hold.
    """
    out = Path(out)
    sel_path = out / SELECTION_JSON
    if not sel_path.exists():
        raise GealError(
            f"{out} holds no selection ({SELECTION_JSON} missing); run `geal select` first"
        )
    try:
        meta = json.loads(sel_path.read_text())
    except (OSError, ValueError) as e:
        raise GealError(f"cannot read the selection in {out}: {e}") from None
    nested = bool(meta.get("nested", True))
    files: dict[str, str] = meta.get("rankings") or {}
    params = meta.get("params", {})
    if budget is None or files.get(str(budget)) == RANKING_CSV:
        csv_name = RANKING_CSV
    elif str(budget) in files:
        csv_name = files[str(budget)]
        params = (meta.get("params_by_budget") or {}).get(str(budget), params)
    elif nested:
        csv_name = RANKING_CSV
    else:
        held = ", ".join(str(b) for b in meta.get("budgets") or [])
        raise SelectionError(
            f"strategy {meta.get('strategy')!r} does not nest budgets and this selection holds "
            f"budgets {held}; select with budget {budget}"
        )
    csv_path = out / csv_name
    if not csv_path.exists():
        raise GealError(f"{out} holds no selection ({csv_name} missing); run `geal select` first")
    try:
        order, radius = _read_ranking_csv(csv_path)
    except (OSError, ValueError, KeyError) as e:
        raise GealError(f"cannot read the selection in {out}: {e}") from None
    ranking = Ranking(
        order,
        radius,
        meta.get("strategy", "?"),
        int(meta.get("seed", 0)),
        params,
        nested,
        meta.get("why_not_nested"),
    )
    return meta, ranking


def pool_of_bank(bank: PatternBank, pool_path: str | Path | None = None, fmt: str = "auto") -> Pool:
    """Reopen the pool a bank was made from (or ``pool_path``), checking it still matches."""
    info = bank.manifest.get("pool", {})
    root = pool_path or info.get("root")
    if not root:
        raise GealError("this bank does not record its pool; pass --pool PATH")
    recorded = info.get("format")
    named = recorded in FORMATS and FORMATS[recorded].named  # a dataset name, not a path
    if pool_path is None and not named and not Path(root).expanduser().exists():
        where = f" recorded in bank {bank.root}" if bank.root is not None else ""
        raise GealError(f"pool {root}{where} no longer exists (moved?); pass --pool PATH")
    pool = open_pool(
        root, info.get("format", fmt) if pool_path is None else fmt, split=info.get("split")
    )
    if info.get("limit"):  # the bank was made from the pool's first images
        pool = pool.head(int(info["limit"]))
    if len(pool) != bank.n:
        raise GealError(
            f"pool {root} has {len(pool)} images but the bank has {bank.n}; rerun `geal "
            "extract` (unchanged images are reused) or pass --pool PATH"
        )
    ids, now = bank.ids, pool.ids
    if ids is not None and ids != now:
        first = next(i for i, (a, b) in enumerate(zip(ids, now, strict=True)) if a != b)
        raise GealError(
            f"pool {root} changed since the bank was made (image {first} is now "
            f"{now[first]!r}, was {ids[first]!r}); rerun `geal extract` (unchanged "
            "images are reused)"
        )
    if info.get("fingerprint") and pool.fingerprint() != info["fingerprint"]:
        log.warning("pool %s changed since the bank was made (same images by id)", root)
    return pool


def open_selection_pool(
    meta: Mapping[str, Any],
    *,
    pool_path: str | Path | None = None,
    fmt: str = "auto",
    bank: PatternBank | None = None,
) -> Pool:
    """Reopen the pool of a selection (``meta`` is its ``selection.json``).

    ``pool_path`` (the pool moved) is opened as given, in format ``fmt``. Else the pool
    of ``bank`` when it records one (checked against the bank), else the pool recorded
    in ``meta``: same root, format, split and prefix.

    Raises:
        GealError: the pool cannot be opened (saying to pass ``--pool``).
    """
    if pool_path is not None:
        return open_pool(pool_path, fmt)
    info = meta.get("pool") or {}
    try:
        if bank is not None and bank.manifest.get("pool", {}).get("root"):
            return pool_of_bank(bank)
        if not info.get("root"):
            raise GealError("this selection does not record its pool")
        pool = open_pool(info["root"], info.get("format", "auto"), split=info.get("split"))
        if info.get("limit"):  # the selection was made on the pool's first images
            pool = pool.head(int(info["limit"]))
        if info.get("n") is not None and len(pool) != int(info["n"]):
            raise GealError(
                f"pool {info['root']} has {len(pool)} images but the selection was made on "
                f"{info['n']}"
            )
        return pool
    except GealError as e:
        why = str(e)
        hint = "" if "--pool PATH" in why else "; pass --pool PATH"
        raise GealError(f"cannot open the selection's pool: {why}{hint}") from None


def open_selection_bank(
    meta: Mapping[str, Any], bank: PatternBank | None = None
) -> PatternBank | None:
    """The pattern bank a selection was made from: ``bank``, else the one ``meta`` records.

    Returns ``None`` when no bank is given and the recorded one is gone.

    Raises:
        GealError: the bank is not the one the selection was made from (its manifest
            hash differs from the recorded one).
    """
    if bank is None:
        path = meta.get("bank")
        if not path or not Path(path).exists():
            return None
        bank = PatternBank.open(path)
    want = meta.get("bank_manifest_hash")
    if want and bank.manifest_hash() != want:
        raise GealError(
            f"bank {bank.root or '(in memory)'} is not the one this selection was made from; "
            "pass the right bank (--bank)"
        )
    return bank
