"""The CLI end to end on generated pools: every command, every split format, bad input."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from fakes import make_coco, make_folder_pool, make_voc_devkit
from geal.cli import main
from geal.pools import open_pool

TINY = ["--model", "test_vit", "--weights", "random", "--image-size", "64", "--workers", "0", "-q"]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEAL_CACHE_DIR", str(tmp_path / "cache"))


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def fails_cleanly(
    capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str, notes: int = 0
) -> str:
    """Run the CLI expecting exit 2, one error line on stderr (after ``notes`` info lines)."""
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()][notes:]
    assert len(lines) == 1, err
    assert lines[0].startswith("geal: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_run_on_voc_writes_official_split_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = make_voc_devkit(tmp_path / "data", n_per_year=6)
    out = tmp_path / "sel"
    code = main(
        [
            "run",
            str(fake.path),
            "--budgets",
            "3,5",
            "--strategy",
            "prob",
            "--to",
            "voc,indices",
            "--out",
            str(out),
            *TINY,
        ]
    )
    assert code == 0, capsys.readouterr().err
    ranking = list(rows(out / "ranking.csv"))
    assert len(ranking) == 5
    picked = [r["id"] for r in ranking]
    # every budget's split files, per year, readable by the VOC reader with that split
    for budget in (3, 5):
        got: list[str] = []
        for year in ("2007", "2012"):
            f = out / f"VOC{year}" / "ImageSets" / "Main" / f"trainval_geal_{budget}.txt"
            if f.exists():
                target = fake.path / f"VOC{year}" / "ImageSets" / "Main" / f.name
                target.write_text(f.read_text())
                got += [f"{year}/{line}" for line in f.read_text().split()]
        assert sorted(got) == sorted(picked[:budget])
        assert sorted(open_pool(fake.path, "voc", split=f"trainval_geal_{budget}").ids) == sorted(
            picked[:budget]
        )
    sel = json.loads((out / "selection.json").read_text())
    assert sel["strategy"] == "prob" and sel["budgets"] == [3, 5] and sel["nested"]
    assert len(sel["bank_manifest_hash"]) == 64


def test_extract_select_export_on_coco(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = make_coco(tmp_path / "coco", 12)
    ann = fake.path / "annotations" / "instances_train2017.json"
    bank = tmp_path / "bank"
    assert main(["extract", str(ann), "--out", str(bank), *TINY]) == 0
    assert "12 images" in capsys.readouterr().out
    out = tmp_path / "sel"
    assert (
        main(["select", str(bank), "--budget", "4", "--strategy", "fds", "--out", str(out), "-q"])
        == 0
    )
    assert main(["export", str(out), "--to", "coco"]) == 0
    subset = json.loads((out / "instances_geal_4.json").read_text())
    ids = [r["id"] for r in rows(out / "ranking.csv")]
    assert sorted(str(im["id"]) for im in subset["images"]) == sorted(ids)
    assert {a["image_id"] for a in subset["annotations"]} == {im["id"] for im in subset["images"]}
    assert subset["categories"] == fake.extra["json"]["categories"]


def test_labeled_images_are_never_picked(tmp_path: Path) -> None:
    fake = make_folder_pool(tmp_path / "pool", 20)
    labeled = tmp_path / "labeled.txt"
    labeled.write_text("\n".join(fake.ids[:5]) + "\n")
    out = tmp_path / "sel"
    assert (
        main(
            [
                "run",
                str(fake.path),
                "--budget",
                "15",
                "--labeled",
                str(labeled),
                "--out",
                str(out),
                *TINY,
            ]
        )
        == 0
    )
    ids = [r["id"] for r in rows(out / "ranking.csv")]
    assert len(ids) == 15 and not set(ids) & set(fake.ids[:5])


def test_the_default_strata_selects_every_budget_afresh_and_says_why(tmp_path: Path) -> None:
    fake = make_folder_pool(tmp_path / "pool", 16)
    labeled = tmp_path / "labeled.txt"
    labeled.write_text("\n".join(fake.ids[:3]) + "\n")
    out = tmp_path / "sel"
    argv = ["run", str(fake.path), "--budgets", "4,9", "--to", "indices"]  # default sampler
    assert main([*argv, "--labeled", str(labeled), "--out", str(out), *TINY]) == 0
    sel = json.loads((out / "selection.json").read_text())
    assert sel["strategy"] == "strata" and sel["nested"] is False
    assert "equal-mass cells" in sel["why_not_nested"]
    for budget in (4, 9):
        picked = json.loads((out / f"indices_geal_{budget}.json").read_text())
        assert len(set(picked)) == budget
        assert not {fake.ids[i] for i in picked} & set(fake.ids[:3])


def test_run_reuses_the_cached_bank(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = make_folder_pool(tmp_path / "pool", 10)
    args = ["run", str(fake.path), "--budget", "3", "--out", str(tmp_path / "a"), *TINY]
    assert main(args) == 0
    first = capsys.readouterr().out
    args[args.index("--out") + 1] = str(tmp_path / "b")
    assert main(args) == 0
    second = capsys.readouterr().out
    assert "shards reused" not in first and "1 shards reused" in second
    a = [r["id"] for r in rows(tmp_path / "a" / "ranking.csv")]
    b = [r["id"] for r in rows(tmp_path / "b" / "ranking.csv")]
    assert a == b


def test_truncated_images_are_skipped_listed_and_the_run_continues(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = make_folder_pool(tmp_path / "pool", 8)
    good = fake.path / "big.jpg"
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(good, quality=95)
    (fake.path / "cut.jpg").write_bytes(good.read_bytes()[:300])  # truncated JPEG
    (fake.path / "junk.png").write_bytes(b"not a png")
    out = tmp_path / "sel"
    assert main(["run", str(fake.path), "--budget", "9", "--out", str(out), *TINY]) == 0
    err = capsys.readouterr().err
    assert "skipped 2 unreadable images" in err and "cut.jpg" in err and "junk.png" in err
    ids = {r["id"] for r in rows(out / "ranking.csv")}
    assert not ids & {"cut.jpg", "junk.png"}
    bank = json.loads((out / "selection.json").read_text())["bank"]
    failed = json.loads((Path(bank) / "failed.json").read_text())
    assert sorted(f["id"] for f in failed) == ["cut.jpg", "junk.png"]
    # budget beyond the readable images is refused clearly
    fails_cleanly(
        capsys,
        ["run", str(fake.path), "--budget", "10", "--out", str(out), *TINY],
        "larger than",
        notes=1,
    )


def test_bad_input_gives_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "o")
    fails_cleanly(
        capsys,
        ["run", str(tmp_path / "missing"), "--budget", "1", "--out", out, *TINY],
        "does not exist",
    )
    (tmp_path / "empty").mkdir()
    fails_cleanly(capsys, ["run", str(tmp_path / "empty"), "--budget", "1", "--out", out, *TINY])
    fake = make_folder_pool(tmp_path / "pool", 4)
    pool = fake.path
    fails_cleanly(
        capsys, ["run", str(pool), "--format", "nope", "--budget", "1", "--out", out, *TINY], "nope"
    )
    fails_cleanly(
        capsys, ["run", str(pool), "--budget", "5", "--out", out, *TINY], "larger than the pool"
    )
    fails_cleanly(
        capsys,
        ["run", str(pool), "--budget", "2", "--strategy", "nope", "--out", out, *TINY],
        "nope",
    )
    fails_cleanly(
        capsys, ["run", str(pool), "--budget", "2", "--to", "nope", "--out", out, *TINY], "nope"
    )
    fails_cleanly(
        capsys, ["run", str(pool), "--budget", "2", "--model", "no_such_model", "--out", out, "-q"]
    )
    lst = tmp_path / "dups.txt"
    lst.write_text(f"{pool}/{fake.ids[0]}\n{pool}/{fake.ids[0]}\n")
    fails_cleanly(capsys, ["run", str(lst), "--budget", "1", "--out", out, *TINY], "duplicate")
    bad = tmp_path / "coco" / "annotations"
    bad.mkdir(parents=True)
    (bad / "instances_train.json").write_text('{"images": [')
    fails_cleanly(
        capsys,
        ["run", str(bad / "instances_train.json"), "--budget", "1", "--out", out, *TINY],
        "instances_train.json",
    )
    fails_cleanly(
        capsys,
        ["select", str(tmp_path / "nobank"), "--budget", "1", "--out", out],
        "not a pattern bank",
    )


def test_missing_weights_offline_say_how_to_supply_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    pool = make_folder_pool(tmp_path / "pool", 3).path
    fails_cleanly(capsys, ["extract", str(pool), "--out", str(tmp_path / "b"), "-q"], "--weights")


def test_help_describes_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ([], ["extract"], ["select"], ["export"], ["run"], ["demo"]):
        with pytest.raises(SystemExit) as e:
            main([*cmd, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        assert "usage: geal" in text
        # every option has a help string (argparse prints nothing after a bare option)
        for line in text.splitlines():
            s = line.strip()
            if s.startswith("--") and "  " not in s and not s.endswith(","):
                nxt = text.splitlines()[text.splitlines().index(line) + 1].strip()
                assert nxt and not nxt.startswith("-"), f"option without help: {s}"


def test_out_that_is_a_file_fails_before_the_forward_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import geal.extract

    def no_extraction(*args: object, **kwargs: object) -> None:
        raise AssertionError("extraction ran although --out cannot be written")

    monkeypatch.setattr(geal.extract, "extract", no_extraction)
    pool = make_folder_pool(tmp_path / "pool", 6).path
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    fails_cleanly(
        capsys, ["run", str(pool), "--budget", "5", "--out", str(notes), *TINY], "is a file"
    )
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"keep")
    fails_cleanly(
        capsys,
        ["run", str(pool), "--budget", "5", "--out", str(photos), *TINY],
        "holds other files and no selection",
    )
    assert notes.read_text() == "mine" and [p.name for p in photos.iterdir()] == ["cat.jpg"]
    assert not (tmp_path / "cache").exists()  # no bank was made


def test_every_budget_of_a_non_nested_selection_exports_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = make_folder_pool(tmp_path / "pool", 64)
    out = tmp_path / "sel"
    argv = ["run", str(fake.path), "--budgets", "10,30,60", "--to", "indices", "--out", str(out)]
    assert main([*argv, *TINY]) == 0  # the default strata: each budget solved afresh
    sel = json.loads((out / "selection.json").read_text())
    assert sel["nested"] is False
    assert sel["rankings"] == {"10": "ranking_10.csv", "30": "ranking_30.csv", "60": "ranking.csv"}
    ranked = {
        b: [int(r["index"]) for r in rows(out / f)]
        for b, f in [(10, "ranking_10.csv"), (30, "ranking_30.csv"), (60, "ranking.csv")]
    }
    assert [len(v) for v in ranked.values()] == [10, 30, 60]
    assert ranked[10] != ranked[60][:10]  # not a prefix: a ranking of its own
    capsys.readouterr()

    again = tmp_path / "again"
    assert main(["export", str(out), "--to", "indices,ultralytics", "--out", str(again)]) == 0
    for b in (10, 30, 60):
        assert json.loads((again / f"indices_geal_{b}.json").read_text()) == sorted(ranked[b])
        assert json.loads((again / f"indices_geal_{b}.json").read_text()) == json.loads(
            (out / f"indices_geal_{b}.json").read_text()
        )
    listed = (again / "geal_10.txt").read_text().splitlines()
    assert listed == [str((fake.path / fake.ids[i]).absolute()) for i in ranked[10]]

    assert main(["export", str(out), "--to", "csv", "--budget", "30", "--out", str(again)]) == 0
    assert [int(r["index"]) for r in rows(again / "ranking.csv")] == ranked[30]

    pytest.importorskip("matplotlib")
    page = tmp_path / "r10.html"
    assert main(["report", str(out), "--budget", "10", "--out", str(page), "-q"]) == 0
    picks = [
        int(i) for i in re.findall(r'<figure class="pick" data-index="(\d+)"', page.read_text())
    ]
    assert picks == ranked[10]
    fails_cleanly(capsys, ["report", str(out), "--budget", "20"], "select with budget 20")


def test_a_rerun_replaces_the_selection_and_says_what_went(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = make_folder_pool(tmp_path / "pool", 12)
    out = tmp_path / "sel"
    first = ["run", str(fake.path), "--budgets", "3,5", "--to", "indices", "--out", str(out)]
    assert main([*first, *TINY]) == 0
    capsys.readouterr()
    assert main(["run", str(fake.path), "--budget", "4", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert (
        f"replaced the earlier selection in {out}; removed indices_geal_3.json, "
        "indices_geal_5.json, ranking_3.csv" in printed
    )
    assert sorted(p.name for p in out.iterdir()) == ["ranking.csv", "selection.json"]
    assert len(rows(out / "ranking.csv")) == 4


def test_bad_strategy_device_and_export_fail_before_the_forward_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import geal.extract

    def no_extraction(*args: object, **kwargs: object) -> None:
        raise AssertionError("extraction ran although the command cannot finish")

    monkeypatch.setattr(geal.extract, "extract", no_extraction)
    pool = str(make_folder_pool(tmp_path / "pool", 6).path)
    out = str(tmp_path / "sel")
    base = ["run", pool, "--budget", "3", "--out", out, *TINY]
    fails_cleanly(capsys, [*base, "--strategy", "nope"], "unknown strategy 'nope'")
    fails_cleanly(capsys, [*base, "--to", "voc"], "VOC split files need a VOC pool")
    fails_cleanly(capsys, [*base, "--to", "yaml"], "unknown export format 'yaml'")
    fails_cleanly(capsys, [*base, "--device", "foo"], "unknown device 'foo'")
    fails_cleanly(capsys, [*base, "--chunk", "0"], "--chunk")
    fails_cleanly(capsys, [*base, "--option", "pick=nope"], "strata: pick", "'nope'")
    fails_cleanly(capsys, [*base, "--option", "bogus=1"], "no option 'bogus'", "pick")
    fails_cleanly(capsys, [*base, "--option", "pick"], "NAME=VALUE")
    fails_cleanly(capsys, [*base, "--option", "n_init=two"], "n_init=two: not a int")
    fails_cleanly(
        capsys, [*base, "--strategy", "fds", "--option", "pick=centre"], "its options: none"
    )
    assert not (tmp_path / "cache").exists() and not (tmp_path / "sel").exists()


def test_option_sets_a_strategys_hyperparameter(tmp_path: Path) -> None:
    fake = make_folder_pool(tmp_path / "pool", 16)
    runs = {}
    for pick in ("centre", "objects"):
        out = tmp_path / pick
        argv = ["run", str(fake.path), "--budget", "4", "--option", f"pick={pick}"]
        assert main([*argv, "--option", "n_init=2", "--out", str(out), *TINY]) == 0
        sel = json.loads((out / "selection.json").read_text())
        runs[pick] = sel["params"]
    assert runs["objects"]["pick"] == "objects, ties by centre" and runs["objects"]["n_init"] == 2
    assert runs["centre"]["pick"] == "centre" and runs["centre"]["n_init_option"] == 2


def test_select_checks_seed_device_and_labeled_files_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = make_folder_pool(tmp_path / "pool", 12)
    bank = tmp_path / "bank"
    assert main(["extract", str(made.path), "--out", str(bank), *TINY]) == 0
    out = str(tmp_path / "sel")
    base = ["select", str(bank), "--budget", "3", "--out", out]
    fails_cleanly(capsys, [*base, "--strategy", "fds", "--device", "foo"], "unknown device")
    fails_cleanly(capsys, [*base, "--seed", "-1"], "--seed must be >= 0")
    # geal's own outputs are accepted as --labeled: an image list of paths, indices json
    assert main([*base, "--to", "ultralytics,indices", "--strategy", "fds"]) == 0
    picked = json.loads((tmp_path / "sel" / "indices_geal_3.json").read_text())
    for labeled in (tmp_path / "sel" / "geal_3.txt", tmp_path / "sel" / "indices_geal_3.json"):
        second = str(tmp_path / f"again-{labeled.suffix[1:]}")
        argv = ["select", str(bank), "--budget", "4", "--out", second, "--strategy", "fds"]
        assert main([*argv, "--labeled", str(labeled), "--to", "indices"]) == 0
        again = json.loads((Path(second) / "indices_geal_4.json").read_text())
        assert not set(again) & set(picked)
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("no-such-image.png\n")
    fails_cleanly(capsys, [*base, "--labeled", str(wrong)], "not in the pool")


def test_a_moved_pool_says_pass_pool_and_selection_json_records_the_bank_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from geal.bank import PatternBank

    made = make_folder_pool(tmp_path / "pool", 8)
    bank = tmp_path / "bank"
    assert main(["extract", str(made.path), "--out", str(bank), *TINY]) == 0
    out = tmp_path / "sel"
    assert main(["select", str(bank), "--budget", "3", "--out", str(out)]) == 0
    meta = json.loads((out / "selection.json").read_text())
    assert meta["bank_content_sha256"] == PatternBank.open(bank).content_sha256
    moved = tmp_path / "elsewhere"
    made.path.rename(moved)
    again = ["select", str(bank), "--budget", "3", "--out", str(tmp_path / "sel2")]
    fails_cleanly(capsys, again, "no longer exists", "--pool")
    assert main([*again, "--pool", str(moved)]) == 0


def test_json_prints_one_object_with_files_counts_and_timings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = make_folder_pool(tmp_path / "pool", 9)
    out = tmp_path / "sel"
    argv = ["run", str(made.path), "--budget", "4", "--out", str(out), "--to", "indices"]
    assert main([*argv, "--json", *TINY]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # stdout holds the object alone
    assert doc["command"] == "run" and doc["exit"] == 0 and doc["budgets"] == [4]
    assert doc["extract"]["images"] == 9 and doc["extract"]["extracted"] == 9
    assert doc["extract"]["seconds"] >= 0 and doc["select_seconds"] >= 0
    assert {Path(f).name for f in doc["files"]} >= {"selection.json", "indices_geal_4.json"}
    assert all(Path(f).exists() for f in doc["files"])
    assert "select:" in captured.err  # the usual lines went to stderr
    assert main(["extract", str(made.path), "--json", *TINY]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["extract"]["reused"] == 9 and again["extract"]["extracted"] == 0
