"""Extraction end to end on generated images with a random-weight tiny ViT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fakes import make_folder_pool
from geal.backbones import create_backbone
from geal.bank import PatternBank, read_shard, shard_name
from geal.extract import extract
from geal.pools import open_pool

MODEL = "test_vit"


def _banks_equal(a: Path, b: Path) -> None:
    ba, bb = PatternBank.open(a), PatternBank.open(b)
    assert ba.n == bb.n
    assert ba.manifest["options"] == bb.manifest["options"]
    assert ba.manifest["n_shards"] == bb.manifest["n_shards"]
    for k in range(ba.manifest["n_shards"]):
        sa, sb = read_shard(a / shard_name(k)), read_shard(b / shard_name(k))
        assert np.array_equal(sa.counts, sb.counts)
        assert sa.patterns.dtype == sb.patterns.dtype
        assert np.array_equal(sa.patterns.view(np.uint8), sb.patterns.view(np.uint8))
        assert np.array_equal(sa.global_.view(np.uint8), sb.global_.view(np.uint8))  # type: ignore[union-attr]
        assert np.array_equal(sa.kept, sb.kept)  # type: ignore[arg-type]
        assert sa.failed == sb.failed


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pool")
    make_folder_pool(root, 45)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


@pytest.fixture(scope="module")
def backbone():  # type: ignore[no-untyped-def]
    return create_backbone(MODEL, "random", "cpu", image_size=64)


def test_bank_identical_for_batch_sizes_and_workers(
    pool_dir: Path, backbone, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    pool = open_pool(pool_dir)
    ref = None
    for batch, workers in [(1, 0), (7, 0), (32, 0), (7, 2)]:
        out = tmp_path / f"b{batch}w{workers}"
        bank, summary = extract(
            pool, out, backbone=backbone, batch_size=batch, workers=workers, shard_size=16,
            precision="fp32", progress=False,
        )  # fmt: skip
        assert summary.failed == 1 and summary.images == 46
        assert bank.counts[pool.index_of("broken.jpg")] == 0
        assert 1 <= bank.counts.max() <= 5
        if ref is None:
            ref = out
        else:
            _banks_equal(ref, out)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_model_lanes_make_the_same_bank_as_one_model(
    pool_dir: Path, backbone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, precision: str
) -> None:  # type: ignore[no-untyped-def]
    """Two batches encoded at once, one thread each, in whatever order they finish,
    write the bank one model with every thread writes."""
    from geal.engines import local

    pool = open_pool(pool_dir)
    for lanes in (1, 3):
        monkeypatch.setattr(local, "default_lanes", lambda device, workers, n=lanes: n)
        _, summary = extract(pool, tmp_path / f"l{lanes}", backbone=backbone, batch_size=4,
                             workers=0, shard_size=16, precision=precision, progress=False)  # fmt: skip
        assert summary.failed == 1 and summary.images == 46
    _banks_equal(tmp_path / "l1", tmp_path / "l3")


def test_bf16_bank_is_batch_independent_too(pool_dir: Path, backbone, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pool = open_pool(pool_dir)
    for batch in (5, 16):
        extract(pool, tmp_path / f"b{batch}", backbone=backbone, batch_size=batch, workers=0,
                precision="bf16", progress=False)  # fmt: skip
    _banks_equal(tmp_path / "b5", tmp_path / "b16")


def test_reuse_and_mismatch(pool_dir: Path, backbone, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from geal.errors import BankError

    pool = open_pool(pool_dir)
    out = tmp_path / "bank"
    _, first = extract(pool, out, backbone=backbone, workers=0, precision="fp32", progress=False)
    _, second = extract(pool, out, backbone=backbone, workers=0, precision="fp32", progress=False)
    assert first.extracted == 46 and second.extracted == 0
    with pytest.raises(BankError, match="clusters"):
        extract(
            pool, out, backbone=backbone, clusters=3, workers=0, precision="fp32", progress=False
        )


def _cli(*args: str, env: dict[str, str]) -> list[str]:
    return [sys.executable, "-m", "geal.cli", *args]


def test_killed_extraction_resumes_to_the_same_bank(pool_dir: Path, tmp_path: Path) -> None:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    common = ["extract", str(pool_dir), "--model", MODEL, "--weights", "random", "--image-size", "64",
              "--precision", "fp32", "--shard-size", "4", "--batch-size", "2", "--workers", "0", "-q"]  # fmt: skip
    ref = tmp_path / "ref"
    subprocess.run(
        [sys.executable, "-m", "geal.cli", *common, "--out", str(ref)],
        env=env,
        check=True,
        capture_output=True,
    )

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "geal.cli", *common, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("shard-*.safetensors"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(out.glob("shard-*.safetensors"))
    assert 3 <= len(done) < 12, "the run must be killed midway"
    before = {p.name: p.stat().st_mtime_ns for p in done}
    res = subprocess.run([sys.executable, "-m", "geal.cli", *common, "--out", str(out), "-v"], env=env,
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert "shards reused" in res.stdout
    for name, mtime in before.items():  # finished shards were not re-extracted
        assert (out / name).stat().st_mtime_ns == mtime
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*tmp"))
    _banks_equal(ref, out)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--image-size", "0"),
        ("--workers", "-1"),
        ("--seed", "-1"),
        ("--batch-size", "0"),
        ("--shard-size", "0"),
        ("--clusters", "0"),
        ("--threshold", "0"),
        ("--threshold", "1.5"),
        ("--threshold", "nan"),
        ("--stage", "-1"),
    ],
)
def test_nonsense_options_are_refused_in_one_line_before_any_work(
    pool_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    from geal.cli import main

    out = tmp_path / "bank"
    code = main(["extract", str(pool_dir), "--model", MODEL, "--weights", "random", "-q",
                 flag, value, "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("geal: error: ") and flag in err[0], err
    assert not out.exists()


def test_more_clusters_than_tokens_is_the_bank_of_k_equal_tokens(
    pool_dir: Path, backbone, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    pool = open_pool(pool_dir).head(6)
    tokens = backbone.tokens_per_image
    assert tokens == (64 // 16) ** 2
    common = dict(backbone=backbone, workers=0, precision="fp32", threshold=1.0, progress=False)
    with caplog.at_level("WARNING", logger="geal.extract"):
        big, _ = extract(pool, tmp_path / "k50", clusters=50, **common)  # type: ignore[arg-type]
    assert f"more than the {tokens} tokens" in caplog.text
    exact, _ = extract(pool, tmp_path / "kT", clusters=tokens, **common)  # type: ignore[arg-type]
    assert big.counts.tolist() == exact.counts.tolist()
    assert set(big.counts.tolist()) == {0, tokens}  # broken.jpg has none, the rest all T
    # threshold 1.0 keeps every token: the bank records all T as kept, 0 for broken.jpg
    assert big.kept_tokens is not None
    assert big.kept_tokens.tolist() == big.counts.tolist()
    assert np.array_equal(big.patterns_array(), exact.patterns_array())


def test_relative_pool_path_is_recorded_absolute_so_select_works_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from geal.cli import main

    make_folder_pool(tmp_path / "work" / "images", 5)
    monkeypatch.chdir(tmp_path / "work")
    tiny = ["--model", MODEL, "--weights", "random", "--image-size", "64", "--workers", "0", "-q"]
    assert main(["extract", "images", *tiny, "--out", "bank"]) == 0
    manifest = json.loads((tmp_path / "work" / "bank" / "bank.json").read_text())
    assert manifest["pool"]["root"] == str((tmp_path / "work" / "images").resolve())
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code = main(["select", str(tmp_path / "work" / "bank"), "--budget", "2", "--out", "sel", "-q"])
    assert code == 0, capsys.readouterr().err
    selection = json.loads((tmp_path / "elsewhere" / "sel" / "selection.json").read_text())
    assert selection["pool"]["root"] == manifest["pool"]["root"]


def _noise_pool(root: Path, names: list[str], seed: int = 0) -> None:
    """Textured images (random noise), so each image's k-means draws matter."""
    from fakes import save_image

    for name in names:
        rng = np.random.default_rng([seed, sum(map(ord, name))])
        save_image(root / name, rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))


def _shard_bytes(bank: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(bank.glob("shard-*.safetensors"))]


def test_changed_pool_reuses_unchanged_images_and_equals_a_fresh_bank(
    backbone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from geal.pools.base import Pool

    pool_dir = tmp_path / "pool"
    _noise_pool(pool_dir, [f"img_{i:03d}.png" for i in range(12)])
    (pool_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    opts = dict(backbone=backbone, workers=0, precision="fp32", shard_size=4, progress=False)
    out = tmp_path / "bank"
    first_bank, first = extract(open_pool(pool_dir), out, **opts)  # type: ignore[arg-type]
    assert (first.extracted, first.reused, first.failed) == (13, 0, 1)

    hashed: list[str] = []
    real_key = Pool.content_key

    def counting_key(self: Pool, index: int) -> bytes:
        hashed.append(self[index].id)
        return real_key(self, index)

    monkeypatch.setattr(Pool, "content_key", counting_key)
    _noise_pool(pool_dir, ["img_0005.png"], seed=1)  # added: every later index shifts
    _noise_pool(pool_dir, ["img_003.png"], seed=2)  # edited
    (pool_dir / "img_005.png").unlink()  # removed
    (pool_dir / "img_007.png").rename(pool_dir / "z_renamed.png")  # moved, same content
    pool = open_pool(pool_dir)
    bank, second = extract(pool, out, **opts)  # type: ignore[arg-type]
    assert sorted(hashed) == ["img_0005.png", "img_003.png", "z_renamed.png"]  # the rest by stat
    assert (second.images, second.extracted, second.reused, second.removed) == (13, 2, 11, 2)
    assert second.failed == 1  # broken.jpg, unchanged, is not tried again
    assert "(11 reused, 2 extracted)" in second.line() and "2 removed" in second.line()
    assert bank.ids == pool.ids
    was, now = (first_bank.ids or []).index("img_007.png"), pool.index_of("z_renamed.png")
    assert was != now  # the moved image kept its patterns at its new index
    assert np.array_equal(bank.patterns_of(now), first_bank.patterns_of(was))

    fresh, _ = extract(pool, tmp_path / "fresh", **opts)  # type: ignore[arg-type]
    _banks_equal(out, tmp_path / "fresh")
    assert _shard_bytes(out) == _shard_bytes(tmp_path / "fresh")
    assert bank.content_sha256 == fresh.content_sha256

    _noise_pool(pool_dir, ["broken.jpg"], seed=3)  # a failed image, now readable
    hashed.clear()
    _, third = extract(open_pool(pool_dir), out, **opts)  # type: ignore[arg-type]
    assert hashed == ["broken.jpg"]
    assert (third.extracted, third.failed, third.removed) == (1, 0, 1)
    _, resharded = extract(open_pool(pool_dir), out, **(opts | {"shard_size": 5}))  # type: ignore[arg-type]
    assert (resharded.extracted, resharded.reused) == (0, 13)  # a new layout, no model run
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"pool", "bank", "fresh", ".bank.lock", ".fresh.lock"}  # no staging left


def test_changed_pool_no_longer_stops_a_cached_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from geal.cli import main

    monkeypatch.setenv("GEAL_CACHE_DIR", str(tmp_path / "cache"))
    _noise_pool(tmp_path / "pool", [f"p{i}.png" for i in range(5)])
    args = ["run", str(tmp_path / "pool"), "--budget", "2", "--out", str(tmp_path / "sel"),
            "--model", MODEL, "--weights", "random", "--image-size", "64", "--workers", "0", "-q"]  # fmt: skip
    assert main(args) == 0
    _noise_pool(tmp_path / "pool", ["p9.png"], seed=5)
    code = main(args)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "6 images (5 reused, 1 extracted)" in out
    banks = list((tmp_path / "cache" / "banks").iterdir())
    assert len([b for b in banks if not b.name.startswith(".")]) == 1  # replaced in place


def test_same_inputs_give_byte_identical_shards_and_content_hash(
    pool_dir: Path, backbone, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import json

    pool = open_pool(pool_dir)
    here, _ = extract(pool, tmp_path / "here", backbone=backbone, workers=0, shard_size=8,
                      precision="fp32", progress=False)  # fmt: skip
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    subprocess.run(
        [sys.executable, "-m", "geal.cli", "extract", str(pool_dir), "--model", MODEL,
         "--weights", "random", "--image-size", "64", "--precision", "fp32", "--shard-size", "8",
         "--workers", "0", "-q", "--out", str(tmp_path / "there")],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    shards = _shard_bytes(tmp_path / "here")
    assert len(shards) == 6 and shards == _shard_bytes(tmp_path / "there")
    there = PatternBank.open(tmp_path / "there")
    assert here.content_sha256 == there.content_sha256
    recorded = json.loads((tmp_path / "there" / "bank.json").read_text())["content_sha256"]
    assert recorded == there.content_sha256 and len(recorded) == 64


def test_a_second_process_waits_for_the_bank_and_reuses_it(tmp_path: Path) -> None:
    import fcntl

    from geal.bank import lock_path

    _noise_pool(tmp_path / "pool", [f"p{i:02d}.png" for i in range(10)])
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    bank = tmp_path / "bank"
    cmd = [sys.executable, "-m", "geal.cli", "extract", str(tmp_path / "pool"), "--model", MODEL,
           "--weights", "random", "--image-size", "64", "--workers", "0", "-q", "--out", str(bank)]  # fmt: skip
    errs = [tmp_path / "err0.txt", tmp_path / "err1.txt"]
    procs = []
    # hold the bank's lock until both processes wait for it, so that they surely overlap
    with open(lock_path(bank), "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        for err in errs:
            with open(err, "w") as f:
                procs.append(
                    subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=f, text=True)
                )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if all("waiting for another geal process" in e.read_text() for e in errs):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the processes did not wait: {[e.read_text() for e in errs]}")
    lines = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e.read_text() for e in errs]
    assert all(line.endswith(f" -> {bank}") for line in lines)
    again = [ln for ln in lines if "(10 reused, 0 extracted)" in ln]
    fresh = [ln for ln in lines if "reused" not in ln and ln.startswith("10 images,")]
    assert len(fresh) == 1 and len(again) == 1, lines  # one extracted, the other reused it
    assert PatternBank.open(bank).n == 10


def test_bank_records_how_many_tokens_each_image_kept(
    pool_dir: Path, backbone, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import torch

    from geal.patterns import attention_filter

    pool = open_pool(pool_dir).head(12)
    bank, _ = extract(
        pool, tmp_path / "b", backbone=backbone, workers=0, precision="fp32", threshold=0.5,
        progress=False,
    )  # fmt: skip
    kept = bank.kept_tokens
    assert kept is not None and kept.shape == (12,)
    ok = [i for i in range(12) if bank.counts[i] > 0]
    with torch.no_grad():
        out = backbone(torch.stack([backbone.preprocess(pool.load(i)) for i in ok]))
    expected = attention_filter(out.saliency.float(), 0.5).sum(1)
    assert kept[ok].tolist() == expected.tolist()
    assert kept[ok].min() >= 1 and kept[ok].max() <= backbone.tokens_per_image
    assert (kept[bank.counts == 0] == 0).all()
