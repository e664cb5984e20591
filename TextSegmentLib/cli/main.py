"""Entry point of ``python -m TextSegmentLib``: dispatches to the sub-command modules.

Exit codes: 0 success, 1 some cases of a batch failed, 2 bad input or usage (with a message naming the problem).
"""

import argparse
import importlib
import logging
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator, List, Optional

from .. import __version__

#: sub-command modules in TextSegmentLib.cli, in help order
SUBCOMMANDS = ["demo", "segment", "models", "summary"]


class UsageError(Exception):
    """Bad input: the message names the problem and what to do; exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m TextSegmentLib", description="TextSegment: text-prompted medical image segmentation"
    )
    parser.add_argument("--version", action="version", version=f"TextSegmentLib {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"{__package__}.{name}")
        sub_parser = module.add_parser(sub)
        sub_parser.set_defaults(_run=module.run)
    return parser


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def stop_cleanly_on_sigterm() -> Iterator[None]:
    """While the block runs, SIGTERM (``kill``, a job scheduler's time limit) ends the program as an exception does:
    temporary files and the output's lock file are removed on the way out (exit code 143)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return
    before = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        with stop_cleanly_on_sigterm():
            return int(args._run(args) or 0)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
