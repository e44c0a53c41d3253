"""The selection directory: written whole or not at all, replaced with a record, read back."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

import geal.pipeline
from fakes import make_folder_pool, make_voc_devkit
from geal.bank import PatternBank
from geal.errors import GealError, SelectionError
from geal.export import EXPORTERS
from geal.pipeline import run_selection
from geal.pools import Pool, open_pool
from geal.sampling import select
from geal.sampling.base import Ranking
from geal.selection import (
    check_out_dir,
    journal_path,
    open_selection_pool,
    read_selection,
    write_selection,
)


def ranking(order: list[int], *, nested: bool = True, params: dict | None = None) -> Ranking:
    return Ranking(
        np.array(order),
        np.linspace(1, 0, len(order)),
        "fds" if nested else "strata",
        0,
        params or {},
        nested=nested,
        why_not_nested=None if nested else "cells depend on the budget",
    )


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Pool:
    return open_pool(make_folder_pool(tmp_path_factory.mktemp("pool"), 8).path)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def hidden_siblings(out: Path) -> list[str]:
    """Temporary folders or journals a write could leave beside ``out``."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}"))


# ------------------------------------------------------------------- write, read back


def test_nested_selection_holds_one_ranking_for_every_budget(pool: Pool, tmp_path: Path) -> None:
    out = tmp_path / "sel"
    written = write_selection(out, pool, {5: ranking([4, 1, 7, 0, 2])}, [2, 5], to=["indices"])
    assert [f.name for f in written.files] == [
        "ranking.csv",
        "indices_geal_2.json",
        "indices_geal_5.json",
        "selection.json",
    ]
    assert all(f.is_file() for f in written.files) and written.removed == []
    meta, top = read_selection(out)
    assert meta["rankings"] == {"2": "ranking.csv", "5": "ranking.csv"}
    assert "params_by_budget" not in meta
    assert top.order.tolist() == [4, 1, 7, 0, 2] and top.nested
    _, two = read_selection(out, 2)
    assert two.selection(2).tolist() == [4, 1]
    assert json.loads((out / "indices_geal_2.json").read_text()) == [1, 4]
    assert hidden_siblings(out) == []


def test_non_nested_selection_keeps_the_ranking_of_every_budget(pool: Pool, tmp_path: Path) -> None:
    out = tmp_path / "sel"
    rankings = {
        2: ranking([6, 3], nested=False, params={"pick": "margin"}),
        3: ranking([0, 5, 2], nested=False, params={"pick": "centre"}),
        5: ranking([1, 7, 4, 0, 2], nested=False, params={"pick": "centre"}),
    }
    files = write_selection(out, pool, rankings, [2, 3, 5], to=["indices"]).files
    names = [f.name for f in files]
    assert names[:3] == ["ranking.csv", "ranking_2.csv", "ranking_3.csv"]
    meta, top = read_selection(out)
    assert meta["rankings"] == {"2": "ranking_2.csv", "3": "ranking_3.csv", "5": "ranking.csv"}
    assert meta["nested"] is False and meta["params"] == {"pick": "centre"}
    assert top.order.tolist() == [1, 7, 4, 0, 2]
    for b, r in rankings.items():
        _, back = read_selection(out, b)
        assert back.selection(b).tolist() == r.order.tolist()  # each budget, not a prefix
        assert back.params == r.params and not back.nested
        assert json.loads((out / f"indices_geal_{b}.json").read_text()) == sorted(r.order.tolist())
    with pytest.raises(SelectionError, match="holds budgets 2, 3, 5; select with budget 4"):
        read_selection(out, 4)


def test_a_non_nested_selection_needs_each_budgets_ranking(pool: Pool, tmp_path: Path) -> None:
    with pytest.raises(SelectionError, match="budget 2 needs its own ranking"):
        write_selection(tmp_path / "sel", pool, {3: ranking([0, 1, 2], nested=False)}, [2, 3])
    assert not (tmp_path / "sel").exists() and hidden_siblings(tmp_path / "sel") == []


def test_paths_inside_files_name_the_final_directory(pool: Pool, tmp_path: Path) -> None:
    out = tmp_path / "sel"
    write_selection(out, pool, {3: ranking([2, 0, 5])}, [3], to=["ultralytics"])
    yaml = (out / "geal_3.yaml").read_text()
    train = next(line for line in yaml.splitlines() if line.startswith("train:"))
    assert json.loads(train.split(":", 1)[1]) == str((out / "geal_3.txt").absolute())


def test_an_mmdet_config_reads_its_split_files_from_the_final_directory(tmp_path: Path) -> None:
    voc = open_pool(make_voc_devkit(tmp_path / "data", n_per_year=3).path)
    out = tmp_path / "sel"
    write_selection(out, voc, {4: ranking([5, 0, 3, 1])}, [4], to=["mmdet"])
    namespace: dict[str, object] = {}
    exec((out / "mmdet_ssd300_voc0712_geal_4.py").read_text(), namespace)
    assert namespace["split_root"] == out.absolute().as_posix() + "/"
    loader = namespace["train_dataloader"]
    assert isinstance(loader, dict)
    for dataset in loader["dataset"]["dataset"]["datasets"]:
        assert Path(dataset["ann_file"]).is_file()  # there now, not in a temporary folder


# --------------------------------------------------------------------------- replace


def test_an_earlier_selection_is_replaced_and_its_lost_files_named(
    pool: Pool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "sel"
    rankings = {b: ranking(list(range(b)), nested=False) for b in (2, 4)}
    write_selection(out, pool, rankings, [2, 4], to=["indices"])
    (out / "report.html").write_text("<html></html>")
    with caplog.at_level(logging.WARNING, logger="geal.selection"):
        written = write_selection(out, pool, {3: ranking([7, 6, 5])}, [3], to=["indices"])
    assert written.removed == [
        "indices_geal_2.json",
        "indices_geal_4.json",
        "ranking_2.csv",
        "report.html",
    ]
    assert sorted(snapshot(out)) == ["indices_geal_3.json", "ranking.csv", "selection.json"]
    assert read_selection(out)[1].order.tolist() == [7, 6, 5]
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "ranking_2.csv" in warning and "report.html" in warning
    assert hidden_siblings(out) == []


def test_rewriting_the_same_selection_removes_nothing(pool: Pool, tmp_path: Path) -> None:
    out = tmp_path / "sel"
    write_selection(out, pool, {3: ranking([7, 6, 5])}, [3], to=["indices"])
    again = write_selection(out, pool, {3: ranking([1, 2, 3])}, [3], to=["indices"])
    assert again.removed == []
    assert json.loads((out / "indices_geal_3.json").read_text()) == [1, 2, 3]


@pytest.mark.parametrize("failure", [GealError("exporter refused"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_earlier_selection_exactly_as_it_was(
    pool: Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    out = tmp_path / "sel"
    write_selection(out, pool, {4: ranking([0, 1, 2, 3])}, [2, 4], to=["indices"])
    before = snapshot(out)
    real = EXPORTERS["indices"]

    def fails_on_the_second_budget(p, r, budget, out_dir, **kw):  # type: ignore[no-untyped-def]
        files = real(p, r, budget, out_dir, **kw)  # the new files are already written...
        if budget == 5:
            raise failure  # ...when the export of a later budget fails
        return files

    monkeypatch.setitem(EXPORTERS._entries, "indices", fails_on_the_second_budget)
    with pytest.raises(type(failure)):
        write_selection(out, pool, {5: ranking([7, 6, 5, 4, 3])}, [3, 5], to=["indices"])
    assert snapshot(out) == before  # no new ranking.csv beside the old selection.json
    assert hidden_siblings(out) == []


# -------------------------------------------------------------------------- refusals


def test_out_that_is_a_file_is_refused_and_kept(pool: Pool, tmp_path: Path) -> None:
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    with pytest.raises(GealError, match="is a file") as info:
        write_selection(out, pool, {2: ranking([0, 1])}, [2])
    assert "\n" not in str(info.value)
    assert out.read_text() == "mine"
    with pytest.raises(GealError, match="is a file"):
        check_out_dir(out / "sel")  # a folder cannot be made under a file either


def test_a_directory_of_other_files_is_refused_and_kept(pool: Pool, tmp_path: Path) -> None:
    out = tmp_path / "photos"
    out.mkdir()
    (out / "cat.jpg").write_bytes(b"not mine to delete")
    with pytest.raises(GealError, match="holds other files and no selection") as info:
        write_selection(out, pool, {2: ranking([0, 1])}, [2])
    assert "\n" not in str(info.value)
    assert snapshot(out) == {"cat.jpg": b"not mine to delete"}
    assert hidden_siblings(out) == []


def test_an_empty_directory_receives_the_selection(pool: Pool, tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    assert check_out_dir(out) == out.absolute()
    write_selection(out, pool, {2: ranking([3, 1])}, [2])
    assert sorted(snapshot(out)) == ["ranking.csv", "selection.json"]


# --------------------------------------------------------------------------- journal


def test_an_interrupted_selection_resumes_from_its_journal_beside_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pool = open_pool(make_folder_pool(tmp_path / "pool", 30).path)
    rng = np.random.default_rng(0)
    bank = PatternBank.from_arrays(rng.normal(size=(60, 8)).astype(np.float32), np.full(30, 2))
    out = tmp_path / "sel"
    journal = journal_path(out)
    assert journal.parent == tmp_path and journal.name.startswith(".sel")

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(geal.pipeline, "write_selection", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_selection(bank, pool, out, [12], strategy="fds", seed=3)
    assert not out.exists() and journal.is_file()  # the picks so far survive
    monkeypatch.undo()

    with caplog.at_level(logging.INFO, logger="geal.coverage"):
        res = run_selection(bank, pool, out, [12], strategy="fds", seed=3)
    assert "resuming fds selection at pick 12 of 12" in caplog.text
    fresh = select(bank, 12, "fds", seed=3)
    assert res.ranking.order.tolist() == fresh.order.tolist()
    assert read_selection(out)[1].order.tolist() == fresh.order.tolist()
    assert not journal.exists() and hidden_siblings(out) == []


# ------------------------------------------------------------------------- reopening


def test_the_recorded_pool_is_reopened_with_its_prefix(pool: Pool, tmp_path: Path) -> None:
    head = pool.head(5)
    out = tmp_path / "sel"
    write_selection(out, head, {3: ranking([4, 0, 2])}, [3])
    meta, _ = read_selection(out)
    again = open_selection_pool(meta)
    assert again.ids == head.ids and len(again) == 5
    meta["pool"]["n"] = 7
    with pytest.raises(GealError, match="made on 7; pass --pool PATH"):
        open_selection_pool(meta)


def test_a_moved_pool_is_one_error_that_says_pass_pool_once(tmp_path: Path) -> None:
    from geal.extract import extract
    from geal.selection import pool_of_bank

    src = open_pool(make_folder_pool(tmp_path / "pool", 4).path)
    bank, _ = extract(src, tmp_path / "bank", model="efficientnet_lite0", weights="random",
                      image_size=32, progress=False)  # fmt: skip
    out = tmp_path / "sel"
    write_selection(out, src, {2: ranking([1, 3])}, [2])
    meta, _ = read_selection(out)
    (tmp_path / "pool").rename(tmp_path / "moved")
    for opening in (lambda: open_selection_pool(meta, bank=bank), lambda: pool_of_bank(bank)):
        with pytest.raises(GealError) as info:
            opening()
        message = str(info.value)
        assert "no longer exists" in message and message.count("pass --pool PATH") == 1
    assert open_selection_pool(meta, pool_path=tmp_path / "moved").ids == src.ids
