"""The selection report without a browser: what the page holds, its caps and its size."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakes import make_idx
from geal.bank import BankWriter, PatternBank
from geal.cli import main
from geal.errors import GealError
from geal.pipeline import run_selection
from geal.pools import Pool, open_pool
from geal.report import (
    MAX_THUMBS,
    SIZE_BUDGET,
    baseline_seed,
    knee,
    random_baseline,
    random_pick,
    write_report,
)
from geal.sampling import select
from geal.selection import read_selection

pytest.importorskip("matplotlib")

CLASSES = ["cat", "dog", "fish", "owl"]
OPTS = {
    "model": "fake_vit",
    "weights": "random",
    "threshold": 0.5,
    "clusters": 3,
    "seed": 0,
    "dtype": "float16",
}


# ----------------------------------------------------------------------------- page


@dataclass
class Figure:
    kind: str
    index: int
    rank: int
    img: str | None = None  # src of its <img>, if it has one


class Page(HTMLParser):
    """The parts of a report the tests look at, read with the standard HTML parser."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: list[Figure] = []
        self.plots: dict[str, str] = {}  # section id -> src of its img.plot
        self.rows: dict[str, list[list[str]]] = {}  # section id -> table rows (cell texts)
        self.sections: list[str] = []
        self.scripts = 0
        self.external: list[str] = []  # any src/href leaving the page
        self._section: str | None = None
        self._figure: Figure | None = None
        self._cell: list[str] | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        for key in ("src", "href"):
            if a.get(key) and not a[key].startswith(("data:", "#")):
                self.external.append(a[key])
        if tag == "section":
            self._section = a.get("id")
            self.sections.append(a.get("id", ""))
            self.rows.setdefault(a.get("id", ""), [])
        elif tag == "figure":
            self._figure = Figure(a.get("class", ""), int(a["data-index"]), int(a["data-rank"]))
            self.figures.append(self._figure)
        elif tag == "img":
            if self._figure is not None:
                self._figure.img = a["src"]
            elif "plot" in a.get("class", "").split() and self._section:
                self.plots[self._section] = a["src"]
        elif tag == "script":
            self.scripts += 1
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._figure = None
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._section:
            self.rows[self._section].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def of(self, kind: str) -> list[Figure]:
        return [f for f in self.figures if f.kind == kind]

    def table(self, section: str) -> dict[str, list[str]]:
        """A two-or-more column table of a section as {first cell: other cells}."""
        return {r[0]: r[1:] for r in self.rows[section] if r}


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def decode(uri: str, fmt: str) -> Image.Image:
    """The picture in a data URI; fails if it is not a readable ``fmt`` image."""
    head, data = uri.split(",", 1)
    assert head == f"data:image/{fmt.lower()};base64"
    im = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
    im.load()
    assert im.format == fmt.upper() and im.width > 0 and im.height > 0
    return im


# ------------------------------------------------------------------------- fixtures


def make_images(root: Path, n: int, size: tuple[int, int] = (40, 30)) -> list[int]:
    """``n`` noisy JPEGs in class folders; noise is the worst case for thumbnail size."""
    rng = np.random.default_rng(7)
    labels = []
    for i in range(n):
        c = i % len(CLASSES)
        d = root / CLASSES[c]
        d.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(d / f"img_{i:05d}.jpg", quality=80)
        labels.append(c)
    return labels


def make_bank(
    root: Path, pool: Pool, *, k: int = 3, dim: int = 16, shard: int = 512
) -> PatternBank:
    """A bank on disk whose patterns cluster by class (a real map has structure)."""
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((max(len(CLASSES), len(pool.classes or [])), dim)) * 3
    info = pool.describe() | {"fingerprint": pool.fingerprint()}
    w = BankWriter.create_or_resume(root, OPTS, info, len(pool), shard)
    for s in w.missing_shards():
        a, b = w.shard_range(s)
        counts = np.full(b - a, k, np.int32)
        labels = np.array([pool[i].label for i in range(a, b)])
        base = centres[labels] + rng.standard_normal((b - a, dim))
        pats = np.repeat(base, k, axis=0) + 0.5 * rng.standard_normal((k * (b - a), dim))
        w.write(s, counts, pats.astype(np.float16), base.astype(np.float16), [])
    return w.finish()


@dataclass
class Made:
    pool: Pool
    bank: PatternBank
    out: Path
    budget: int


def make_selection(tmp: Path, n: int, budget: int, size: tuple[int, int] = (40, 30)) -> Made:
    make_images(tmp / "pool", n, size)
    pool = open_pool(tmp / "pool")
    bank = make_bank(tmp / "bank", pool)
    out = tmp / "sel"
    run_selection(
        bank,
        pool,
        out,
        [budget],
        strategy="fds",
        extra={"bank": str(bank.root), "extract_seconds": 12.5},
    )
    return Made(pool, bank, out, budget)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Made:
    return make_selection(tmp_path_factory.mktemp("small"), n=60, budget=12)


@pytest.fixture(scope="module")
def small_page(small: Made) -> Page:
    return parse(write_report(small.out, progress=False))


# ---------------------------------------------------------------------------- tests


def test_picks_in_rank_order_with_radius_and_thumbnails(small: Made, small_page: Page) -> None:
    _, ranking = read_selection(small.out)
    picks = small_page.of("pick")
    assert len(picks) == small.budget
    assert [f.index for f in picks] == ranking.order[: small.budget].tolist()
    assert [f.rank for f in picks] == list(range(1, small.budget + 1))
    for f in picks:
        assert f.img is not None
        decode(f.img, "JPEG")  # a broken thumbnail fails here
    table = small_page.rows["table"][1:]
    assert [int(r[1]) for r in table] == ranking.order.tolist()
    assert [r[2] for r in table] == [small.pool[i].id for i in ranking.order.tolist()]
    assert [r[3] for r in table] == [CLASSES[small.pool[i].label] for i in ranking.order.tolist()]
    np.testing.assert_allclose([float(r[4]) for r in table], ranking.radius, atol=1e-4)


def test_random_pick_is_the_seeded_random_sampler(small: Made, small_page: Page) -> None:
    rnd = small_page.of("random")
    want = select(small.bank, small.budget, "random", seed=0).order.tolist()
    assert [f.index for f in rnd] == want
    for f in rnd:
        assert f.img is not None
        decode(f.img, "JPEG")


def test_one_random_pick_serves_the_report_the_demo_and_the_random_strategy(
    small: Made, small_page: Page
) -> None:
    from geal.demo import random_pick as demo_pick
    from geal.demo.coverage import random_pick as coverage_pick

    shown = [f.index for f in small_page.of("random")]
    assert shown == random_baseline(small.bank, small.budget, baseline_seed("fds", 0)).tolist()
    assert demo_pick is coverage_pick is random_pick
    assert baseline_seed("strata", 4) == 4 and baseline_seed("random", 4) == 5
    # unreadable images (no patterns) are never drawn, exactly as the random sampler skips them
    counts = np.array([2, 0, 2, 2, 0, 2, 2, 2, 0, 2], np.int32)
    rng = np.random.default_rng(3)
    bank = PatternBank.from_arrays(rng.normal(size=(int(counts.sum()), 4)), counts)
    for seed in (0, 1, 7):
        for size in (1, 4, 7):
            want = select(bank, size, "random", seed=seed).order.tolist()
            assert random_baseline(bank, size, seed).tolist() == want
    assert sorted(random_pick(10, 10, 0).tolist()) == list(range(10))


def test_class_counts_of_picks_random_and_pool(small: Made, small_page: Page) -> None:
    labels = np.array([it.label for it in small.pool])
    _, ranking = read_selection(small.out)
    rnd = select(small.bank, small.budget, "random", seed=0).order
    table = small_page.table("counts")
    assert table["class"][::2] == ["picks", "random", "pool"]
    for c, name in enumerate(CLASSES):
        picks, _, random, _, pool, _ = table[name]
        assert int(picks) == int((labels[ranking.order] == c).sum())
        assert int(random) == int((labels[rnd] == c).sum())
        assert int(pool) == int((labels == c).sum())
    decode(small_page.plots["counts"], "PNG")


def test_map_and_curve_are_png_plots(small_page: Page) -> None:
    for key in ("map", "curve", "counts"):
        im = decode(small_page.plots[key], "PNG")
        assert im.width >= 400 and im.height >= 150
        # drawn, not blank: many distinct colours
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 16) or []) > 20


def test_settings_show_run_and_bank_options(small: Made, small_page: Page) -> None:
    settings = small_page.table("settings")
    assert settings["strategy"] == ["fds"]
    assert settings["budgets"] == [f"[{small.budget}]"]
    assert settings["model"] == ["fake_vit"]
    assert settings["clusters K"] == ["3"]
    assert settings["attention mass τ"] == ["0.5"]
    assert settings["extract (s)"] == ["12.5"]
    meta, _ = read_selection(small.out)
    assert float(settings["select (s)"][0]) == pytest.approx(meta["select_seconds"], abs=1e-3)
    assert settings["bank"] == [str(small.bank.root)]


def test_page_is_offline_and_self_contained(small_page: Page) -> None:
    assert small_page.external == []  # no CDN, no files beside it
    assert small_page.scripts == 1
    assert {"picks", "random", "counts", "map", "curve", "settings", "table"} <= set(
        small_page.sections
    )


def test_smaller_budget_and_thumbnail_cap(small: Made, tmp_path: Path) -> None:
    page = parse(
        write_report(small.out, budget=5, max_thumbs=3, out=tmp_path / "r.html", progress=False)
    )
    _, ranking = read_selection(small.out)
    assert [f.index for f in page.of("pick")] == ranking.order[:3].tolist()
    assert len(page.of("random")) == 3
    assert len(page.rows["table"]) == 1 + 5  # every pick of the budget is in the table


def test_unreadable_pick_leaves_a_visible_gap(tmp_path: Path) -> None:
    made = make_selection(tmp_path, n=20, budget=4)
    _, ranking = read_selection(made.out)
    gone = made.pool[int(ranking.order[1])]
    assert gone.path is not None
    Path(gone.path).unlink()
    page = parse(write_report(made.out, pool=made.pool, bank=made.bank, progress=False))
    picks = page.of("pick")
    assert len(picks) == 4
    assert [f.img is None for f in picks] == [False, True, False, False]


def test_without_bank_there_is_no_map_or_random(small: Made, tmp_path: Path) -> None:
    sel = tmp_path / "sel"
    sel.mkdir()
    meta = json.loads((small.out / "selection.json").read_text())
    meta["bank"] = str(tmp_path / "moved-away")
    (sel / "selection.json").write_text(json.dumps(meta))
    (sel / "ranking.csv").write_text((small.out / "ranking.csv").read_text())
    page = parse(write_report(sel, progress=False))
    assert len(page.of("pick")) == small.budget
    assert page.of("random") == [] and "map" not in page.plots
    assert "curve" in page.plots


def test_refuses_a_bank_the_selection_was_not_made_from(small: Made, tmp_path: Path) -> None:
    other = PatternBank.from_arrays(
        np.ones((len(small.pool), 4), np.float32), np.ones(len(small.pool), np.int32)
    )
    with pytest.raises(GealError, match="not the one this selection was made from"):
        write_report(small.out, bank=other, out=tmp_path / "r.html")


def test_cli_report(small: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "page.html"
    code = main(["report", str(small.out), "--out", str(out), "--max-thumbs", "5", "-q"])
    assert code == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert len(parse(out).of("pick")) == 5
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "holds no selection" in capsys.readouterr().err


def test_tiny_images_are_scaled_up_crisply_and_container_pools_work(tmp_path: Path) -> None:
    fake = make_idx(tmp_path, 30, fashion=True)
    pool = open_pool(fake.path, split="train")
    bank = make_bank(tmp_path / "bank", pool)
    run_selection(bank, pool, tmp_path / "sel", [6], strategy="fds", extra={"bank": str(bank.root)})
    path = write_report(tmp_path / "sel", progress=False)
    page = parse(path)
    assert len(page.of("pick")) == 6
    for f in page.of("pick"):
        assert f.img is not None and decode(f.img, "JPEG").size == (28, 28)
    assert path.read_text(encoding="utf-8").count('<img class="px"') == 12  # picks + random
    assert pool.classes is not None
    assert set(page.table("counts")) - {"class"} <= set(pool.classes)


def test_knee() -> None:
    x = np.arange(1, 51, dtype=np.float64)
    assert knee(1.0 / x) is not None and knee(1.0 / x) <= 10  # bends early
    assert knee(np.linspace(1.0, 0.1, 50)) is None  # a straight line has no bend
    assert knee(np.array([1.0, 0.5, 0.4])) is None  # too short to say
    assert knee(np.array([1.0, np.nan, 0.5, 0.4, 0.3])) is None


def test_2000_image_pool_stays_within_the_size_budget(tmp_path: Path) -> None:
    budget = 300
    made = make_selection(tmp_path, n=2000, budget=budget, size=(160, 120))
    path = write_report(made.out, max_points=1500, progress=False)
    size = path.stat().st_size
    assert size < SIZE_BUDGET
    assert size < 8 * 2**20  # noise thumbnails are the worst case; photos are ~3x smaller
    page = parse(path)
    assert len(page.of("pick")) == MAX_THUMBS < budget
    assert len(page.of("random")) == MAX_THUMBS
    assert len(page.rows["table"]) == 1 + budget
    assert all(f.img is not None for f in page.figures)
    assert "1,500 of 2,000 readable images drawn" in path.read_text(encoding="utf-8")
