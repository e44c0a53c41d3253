"""Command line: argument parsing and printing only; the work lives in the modules.

One module per command (``extract``, ``select``, ``export``, ``push``, ``run``,
``report``, ``demo``), each adding its parser and naming its handler; :func:`main` dispatches and
turns user errors into one line on stderr. Building the parser imports nothing heavy,
so ``geal --help`` and ``geal --version`` answer without loading torch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence

from geal._version import __version__
from geal.cli import demo, export, extract, push, report, run, select
from geal.errors import GealError

log = logging.getLogger("geal")

EPILOG = """examples:
  geal run ./images --budget 100 --to ultralytics --out sel/      # a folder of images
  geal run VOCdevkit --budgets 1000,2000 --to voc --out sel/      # PASCAL VOC07+12
  geal run annotations/instances_train2017.json --budget 5000 --to coco --out sel/
  geal run ./images --budget 100 --out sel/ --report              # ... and sel/report.html
  geal report sel/ --screenshot report.png                        # report + its picture
  geal export sel/ --to mmdet                                     # + mmdetection SSD300 config
  geal push labelstudio http://localhost:8080 sel/ --project picks --token $TOKEN
  geal demo                                                       # offline demo + report
"""

COMMANDS = (extract, select, export, push, run, report, demo)


def build_parser() -> argparse.ArgumentParser:
    """The ``geal`` parser with every command's sub-parser."""
    parser = argparse.ArgumentParser(
        prog="geal",
        description="Pick the images of an unlabeled pool worth annotating, with one forward "
        "pass of a frozen pre-trained model and no training (GEAL).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"geal {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``geal`` with ``argv`` (default: the process arguments); return the exit status."""
    parser = build_parser()
    a = parser.parse_args(argv)
    if not a.command:
        parser.print_help()
        return 2
    level = logging.WARNING - 10 * min(a.verbose, 2)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # without a terminal, loops over the pool log periodic progress lines (geal.progress)
    logging.getLogger("geal.progress").setLevel(min(level, logging.INFO))
    t0 = time.perf_counter()
    try:
        if getattr(a, "json", False):  # stdout is the JSON object alone
            with contextlib.redirect_stdout(sys.stderr):
                code: int = a.handler(a)
            result = {"command": a.command, "exit": code, **getattr(a, "result", {})}
            result["seconds"] = round(time.perf_counter() - t0, 3)
            print(json.dumps(result, indent=1))
        else:
            code = a.handler(a)
    except GealError as e:
        print(f"geal: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # e.g. `geal ... | head`: the reader left, nothing to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("geal: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (PermissionError, IsADirectoryError, NotADirectoryError, FileNotFoundError) as e:
        print(f"geal: error: {e.strerror or e}: {e.filename}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno in (28,):  # ENOSPC
            print(f"geal: error: no space left on device ({e.filename or ''})", file=sys.stderr)
            return 2
        raise
    log.debug("%s took %.2f s", a.command, time.perf_counter() - t0)
    return code


__all__ = ["build_parser", "main"]
