"""The CLI under random option values and random broken files: exit 0 or 2, one clear line
on error, never a traceback, never a partial output directory."""

from __future__ import annotations

import io
import itertools
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fakes import make_folder_pool
from geal.cli import main

TINY = ["--model", "test_vit", "--weights", "random", "--workers", "0", "-q"]
_COUNTER = itertools.count()


def _png16(path: Path) -> None:
    Image.fromarray(np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)).save(path)


def _truncated_png(path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (9, 200, 30)).save(buf, format="PNG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def _bomb_header(path: Path) -> None:
    """A PNG header claiming 100000 x 100000 pixels."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    data = struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + data)


BROKEN = {
    "random_bytes": lambda p: p.with_suffix(".jpg").write_bytes(os.urandom(300)),
    "empty": lambda p: p.with_suffix(".png").write_bytes(b""),
    "truncated": lambda p: _truncated_png(p.with_suffix(".png")),
    "sixteen_bit": lambda p: _png16(p.with_suffix(".png")),
    "bomb_header": lambda p: _bomb_header(p.with_suffix(".png")),
}

OPTIONS = {
    "--budget": ["0", "-3", "1", "4", "100000", "x"],
    "--seed": ["-1", "0", "7", "1.5"],
    "--strategy": ["strata", "prob", "fds", "kcenter", "random", "kmeans", "nope"],
    "--to": ["indices", "ultralytics", "voc", "coco,indices", "bogus", ""],
    "--device": ["cpu", "auto", "foo", "cuda:9"],
    "--chunk": ["0", "1", "64", "-5"],
    "--clusters": ["0", "1", "3", "500"],
    "--image-size": ["0", "64", "-32", "63"],
    "--threshold": ["0", "0.5", "1", "1.5"],
    "--batch-size": ["0", "1", "5"],
    "--prune": ["auto", "on", "off", "maybe"],
    "--distance": ["cosine", "euclidean"],
}


def _no_partial_outputs(parent: Path) -> None:
    left = [p.name for p in parent.iterdir() if ".tmp-" in p.name]
    assert not left, f"temporary outputs left behind: {left}"


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_random_options_and_broken_files_end_in_exit_0_or_2(
    data: st.DataObject,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path_factory.mktemp(f"fuzz{next(_COUNTER)}")
    monkeypatch.setenv("GEAL_CACHE_DIR", str(root / "cache"))
    n = data.draw(st.integers(0, 9))
    pool = make_folder_pool(root / "pool", n).path if n else root / "pool"
    pool.mkdir(exist_ok=True)
    for k, kind in enumerate(data.draw(st.lists(st.sampled_from(sorted(BROKEN)), max_size=3))):
        BROKEN[kind](pool / f"broken_{k}")
    command = data.draw(st.sampled_from(["run", "extract", "select"]))
    chosen = data.draw(st.lists(st.sampled_from(sorted(OPTIONS)), max_size=5, unique=True))
    extra: list[str] = []
    for name in chosen:
        extra += [name, data.draw(st.sampled_from(OPTIONS[name]))]
    if "--image-size" not in chosen:
        extra += ["--image-size", "64"]
    out = root / "sel"
    if data.draw(st.booleans()):  # sometimes a user file is in the way
        out.write_text("mine")
    if command == "run":
        argv = ["run", str(pool), "--out", str(out), *TINY, *extra]
        if "--budget" not in chosen:
            argv += ["--budget", "3"]
    elif command == "extract":
        keep = [a for a in extra if a not in OPTIONS["--to"]]
        drop = {"--budget", "--seed", "--strategy", "--to", "--chunk", "--prune", "--distance"}
        pairs = [(keep[i], keep[i + 1]) for i in range(0, len(keep) - 1, 2)]
        args = [x for n, v in pairs if n not in drop for x in (n, v)]
        argv = ["extract", str(pool), "--out", str(root / "bank"), *TINY, *args]
    else:
        assert main(
            ["extract", str(pool), "--out", str(root / "bank"), *TINY, "--image-size", "64"]
        ) in (0, 2)
        capsys.readouterr()
        drop = {"--clusters", "--image-size", "--threshold", "--batch-size"}
        pairs = [(extra[i], extra[i + 1]) for i in range(0, len(extra) - 1, 2)]
        args = [x for n, v in pairs if n not in drop for x in (n, v)]
        argv = ["select", str(root / "bank"), "--out", str(out), *args]
        if "--budget" not in chosen:
            argv += ["--budget", "2"]
    before = out.read_text() if out.is_file() else None
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse rejects a malformed value: its usage line, exit 2
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, err)
    assert "Traceback" not in err, (argv, err)
    if code == 2:
        errors = [ln for ln in err.splitlines() if ln.startswith(("geal: error:", "usage:"))]
        assert errors, (argv, err)
    if before is not None:  # a user's file is never replaced
        assert out.is_file() and out.read_text() == before
    _no_partial_outputs(root)
    if code == 0 and command != "extract":
        assert (out / "selection.json").is_file() and (out / "ranking.csv").is_file()
