"""Regenerate ``rankings.json``, the pinned rankings of ``tests/unit/test_golden.py``.

Run only when a ranking is meant to change (a new sampler rule), and say why in the
commit: ``PYTHONPATH=src python tests/golden/make_rankings.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from golden_cases import CASES, run_case  # noqa: E402


def main() -> None:
    out = {case.key: run_case(case) for case in CASES}
    (HERE / "rankings.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(out)} rankings to {HERE / 'rankings.json'}")


if __name__ == "__main__":
    main()
