"""The evaluation harness end to end on a tiny generated labelled IDX pool.

Three classes of 28x28 grey images (horizontal stripes, vertical stripes, a blob) with
noise, a random-weight tiny ViT backbone at 32 px, and a shrunken CNN recipe so that
every training takes a fraction of a second.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fakes import idx_bytes
from geal.errors import GealError
from geal.evaluate import (
    ROW_KEYS,
    BackboneConfig,
    CNNRecipe,
    Strategy,
    Task,
    build_task,
    evaluate_selection,
    linear_probe,
    markdown_tables,
    plot_curves,
    random_start,
    resolve_strategy,
    run_curves,
    traditional_loop,
)
from geal.evaluate import loop as loop_mod
from geal.pools import open_pool
from geal.sampling import SAMPLERS

TINY = CNNRecipe(widths=(4, 8, 8), hidden=16, batch=16, epochs=2, min_steps=40)
ALL = [
    "kernelcover",
    "prob",
    "fds",
    "prob-k1",
    "fds-k1",
    "random",
    "kcenter",
    "kmeans",
    "typiclust",
    "probcover",
    "activeft",
    "loop-entropy",
    "loop-coreset",
]


def shape_image(label: int, rng: np.random.Generator) -> np.ndarray:
    """Class 0: horizontal stripes, 1: vertical stripes, 2: a bright blob; plus noise."""
    yy, xx = np.mgrid[0:28, 0:28]
    phase = rng.integers(0, 4)
    if label == 0:
        img = ((yy + phase) // 2 % 2) * 200.0
    elif label == 1:
        img = ((xx + phase) // 2 % 2) * 200.0
    else:
        cy, cx = rng.integers(9, 19, 2)
        img = (((yy - cy) ** 2 + (xx - cx) ** 2) < 36) * 220.0
    img = img + rng.normal(0, 20, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_pool(folder: Path, n_train: int = 60, n_test: int = 30) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 3
        rng.shuffle(labels)
        images = np.stack([shape_image(int(y), rng) for y in labels])
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(images))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(labels.astype(np.uint8)))
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    """Tiny nets train several times faster on one thread than on two busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> Task:
    root = tmp_path_factory.mktemp("eval")
    folder = write_pool(root / "shapes")
    cfg = BackboneConfig(
        "tiny", "test_vit", weights="random", image_size=32, clusters=(1, 2), precision="fp32"
    )
    return build_task(
        open_pool(folder, "idx", split="train"),
        open_pool(folder, "idx", split="test"),
        [cfg],
        cache_dir=root / "cache",
        progress=False,
        cnn_recipe=TINY,
    )


def fresh(task: Task) -> Task:
    """The same task with nothing memoised."""
    return dataclasses.replace(task, cache={})


def first_images(bank: Any, budget: int, **_: Any) -> np.ndarray:
    return np.arange(budget)


def test_task_holds_labels_images_and_banks(task: Task, tmp_path: Path) -> None:
    assert task.n == 60 and task.classes == 10  # the IDX reader names ten classes
    assert task.pool_images is not None and task.pool_images.shape == (60, 28, 28)
    assert task.test_images is not None and task.test_images.shape == (30, 28, 28)
    bb = task.backbone("tiny")
    assert sorted(bb.banks) == [1, 2]
    assert bb.bank().counts.max() == 2 and bb.bank(1).counts.max() == 1
    assert bb.test_features is not None and bb.test_features.shape == (30, bb.bank().dim)
    assert all(v["seconds"] > 0 for v in bb.extract_seconds.values())
    # a second build reuses the cached banks and reports their first extraction time
    again = build_task(
        open_pool(Path(task.meta["pool"]["root"]), "idx", split="train"),
        open_pool(Path(task.meta["pool"]["root"]), "idx", split="test"),
        [BackboneConfig("tiny", "test_vit", "random", 32, clusters=(1, 2), precision="fp32")],
        cache_dir=task.meta["cache_dir"],
        images=False,
        progress=False,
    )
    assert again.backbone().extract_seconds == bb.extract_seconds
    assert np.array_equal(again.backbone().pool_features, bb.pool_features)


def test_every_strategy_runs_end_to_end(task: Task) -> None:
    strategies: list[Any] = [*ALL, ("first", first_images)]
    budgets, seeds = [6, 12], [0, 1]
    rows = run_curves(fresh(task), strategies, budgets, seeds, ("cnn", "linear"))
    assert len(rows) == len(strategies) * len(budgets) * len(seeds) * 2
    names = {r["strategy"] for r in rows}
    assert names == {*ALL, "first"}
    for r in rows:
        assert set(ROW_KEYS) <= set(r)
        assert 0.0 <= r["accuracy"] <= 1.0
        assert 1 <= r["classes"] <= 3
        assert r["select_seconds"] >= 0 and r["train_seconds"] >= 0
        assert r["backbone"] == "tiny"
    first = [r for r in rows if r["strategy"] == "first" and r["budget"] == 6]
    assert {r["classes"] for r in first} == {len(set(task.pool_labels[:6]))}
    loops = [r for r in rows if r["strategy"].startswith("loop-")]
    assert all((r["select_seconds"] == 0) == (r["budget"] == 6) for r in loops)
    assert all("round" in r for r in loops)


def test_same_seed_same_rows_and_workers_do_not_change_results(task: Task) -> None:
    strategies = ["random", "fds", "kmeans", "loop-coreset"]
    a = run_curves(fresh(task), strategies, [6, 12], [3], ("cnn", "linear"))
    b = run_curves(fresh(task), strategies, [6, 12], [3], ("cnn", "linear"), workers=2)
    assert [r["accuracy"] for r in a] == [r["accuracy"] for r in b]
    assert [r["classes"] for r in a] == [r["classes"] for r in b]


def test_seeds_change_random_not_fds_from_a_fixed_start(task: Task) -> None:
    bank = task.backbone().bank()
    rand = [resolve_strategy("random").select(bank, 10, s) for s in range(3)]
    assert not np.array_equal(np.sort(rand[0]), np.sort(rand[1]))
    # fds has no randomness beyond its start image: from a given start it is seed-free
    fds = [SAMPLERS["fds"](bank, 10, seed=s, labeled=[7]).order for s in range(3)]
    assert all(np.array_equal(fds[0], f) for f in fds[1:])
    # every strategy is deterministic for a seed
    for name in ALL[:10]:
        st = resolve_strategy(name)
        assert np.array_equal(st.select(bank, 8, 5), st.select(bank, 8, 5)), name
    # and so is training: a recomputation from scratch gives the same accuracy
    idx = rand[0]
    for protocol in ("cnn", "linear"):
        assert evaluate_selection(fresh(task), idx, protocol, 1) == evaluate_selection(
            fresh(task), idx, protocol, 1
        )


@pytest.mark.parametrize("method", ["entropy", "coreset"])
def test_loop_retrains_a_fresh_model_every_round(
    task: Task, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained: list[tuple[int, Any]] = []
    real = loop_mod.train_cnn

    def counting(*args: Any, **kwargs: Any) -> Any:
        model = real(*args, **kwargs)
        trained.append((np.unique(args[2]).size, model))
        return model

    monkeypatch.setattr(loop_mod, "train_cnn", counting)
    budgets = [5, 10, 20]
    run = traditional_loop(fresh(task), budgets, seed=2, method=method)
    assert [n for n, _ in trained] == budgets  # one training per round, on the labels held
    models = [m.model for _, m in trained]
    assert len({id(m) for m in models}) == 3
    assert not all(
        np.array_equal(p.detach(), q.detach())
        for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True)
    )
    sel = run.selections
    assert np.array_equal(sel[5], random_start(task.n, 5, 2))
    assert np.array_equal(
        np.sort(sel[5]), np.sort(resolve_strategy("random").select(task.backbone().bank(), 5, 2))
    )
    for a, b in ((5, 10), (10, 20)):
        assert sel[b].size == b and np.unique(sel[b]).size == b
        assert set(sel[a]) < set(sel[b])
    # the batch is what the round's model says: top entropy, or k-center greedy
    x = task.pool_tensor
    model0 = trained[0][1]
    new = np.setdiff1d(sel[10], sel[5])
    others = np.setdiff1d(np.arange(task.n), sel[10])
    if method == "entropy":
        h = loop_mod.entropy_scores(model0, x)
        assert h[new].min() >= h[others].max() - 1e-9
    else:
        f = model0.features(x).numpy().astype(np.float64)
        d = np.linalg.norm(f[:, None] - f[None, sel[5]], axis=2).min(1)
        first = sel[10][5]
        assert d[first] >= 0.99 * d[np.setdiff1d(np.arange(task.n), sel[5])].max()
    # each round's accuracy is exactly protocol (a)'s for the labels held then
    for r in run.rounds:
        assert r.accuracy == evaluate_selection(fresh(task), sel[r.budget], "cnn", 2)
        assert r.train_seconds > 0
    assert run.rounds[-1].score_seconds == 0 and run.rounds[0].score_seconds > 0
    assert run.seconds_before(5) == 0 < run.seconds_before(10) < run.seconds_before(20)


def test_cnn_protocol_learns_a_separable_task(task: Task) -> None:
    assert evaluate_selection(fresh(task), np.arange(60), "cnn", 0) >= 0.9


def test_linear_probe_edge_cases() -> None:
    x = np.random.default_rng(0).normal(size=(20, 4))
    y = np.array([0, 1] * 10)
    acc = linear_probe(x[:3], np.zeros(3, int), x, y, mean=np.zeros(4), std=np.ones(4))
    assert acc == 0.5  # one class selected: that class everywhere
    sep = x.copy()
    sep[:, 0] += 5 * y
    acc = linear_probe(sep[:10], y[:10], sep, y, mean=sep.mean(0), std=sep.std(0))
    assert acc == 1.0


def test_bad_input_is_one_clear_error(task: Task) -> None:
    with pytest.raises(GealError, match="unknown strategy"):
        resolve_strategy("nope")
    with pytest.raises(GealError, match="no K=3 bank"):
        run_curves(fresh(task), ["prob-k3"], [5], [0], ("linear",))
    with pytest.raises(GealError, match="unknown protocol"):
        evaluate_selection(task, [0, 1], "svm")
    with pytest.raises(GealError, match="indices"):
        evaluate_selection(task, [task.n], "linear")
    with pytest.raises(GealError, match="returned"):
        run_curves(fresh(task), [Strategy("dup", fn=lambda b, n, **_: [0] * n)], [3], [0])
    bank = task.backbone().bank()
    with pytest.raises(GealError, match="bank holds"):
        Task.from_arrays([0, 1, 2], [0], banks={"x": bank})


def test_tables_and_plot(task: Task, tmp_path: Path) -> None:
    rows = run_curves(fresh(task), ["random", "fds", "kcenter"], [5, 10], [0, 1], ("linear",))
    md = markdown_tables(rows)
    assert "### Test accuracy (%), protocol `linear`, backbone `tiny`" in md
    assert "Difference to `random`" in md and "**" in md
    assert "| fds |" in md and "Classes present" in md
    png = plot_curves(rows, tmp_path / "curves.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5000
    with pytest.raises(GealError, match="relative to 'loop-entropy'"):
        plot_curves(rows, tmp_path / "gain.png", relative_to="loop-entropy")
