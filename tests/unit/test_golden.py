"""Rankings pinned on golden banks: a refactoring must not change a single pick.

The expected rankings were made by ``tests/golden/make_rankings.py``; a sampler whose
rule changes on purpose regenerates them in the same commit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from golden_cases import CASES, Case, run_case

PINNED = json.loads((Path(__file__).parents[1] / "golden" / "rankings.json").read_text())


def test_every_case_is_pinned() -> None:
    assert sorted(PINNED) == sorted(c.key for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.key)
def test_ranking_is_unchanged(case: Case) -> None:
    got = run_case(case)
    want = PINNED[case.key]
    assert got["order"] == want["order"]
    assert got["radius"] == want["radius"]
    assert got["nested"] == want["nested"]
