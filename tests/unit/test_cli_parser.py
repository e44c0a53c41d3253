"""The CLI's parser: light to build (no torch for --help) and true to the samplers it names."""

from __future__ import annotations

import subprocess
import sys

from geal.cli import common


def test_help_constants_match_the_samplers() -> None:
    from geal.coverage import PRUNE_MIN_PATTERNS
    from geal.sampling import DEFAULT_STRATEGY, SAMPLERS

    assert list(common.STRATEGIES) == sorted(SAMPLERS)
    assert common.DEFAULT_STRATEGY == DEFAULT_STRATEGY
    assert common.PRUNE_MIN_PATTERNS == PRUNE_MIN_PATTERNS


def test_help_and_version_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from geal.cli import main\n"
        "for argv in (['--help'], ['--version'], ['run', '--help'], ['select', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted(m for m in ('torch', 'numba', 'geal.sampling') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "usage: geal" in proc.stdout and "geal " in proc.stdout
    assert "HEAVY []" in proc.stderr
