"""``demo``: segment a few structures on a real brain MRI from a package, write labelmap, report and PNG."""

import argparse
from pathlib import Path

from .main import UsageError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="segment a few brain structures on a real MRI (the main job)")
    p.add_argument("--output", default="demo_output", help="output folder (default: demo_output)")
    p.add_argument("--model", default="default", help="catalog id or bundle folder (default: the embedded model)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--input", default=None, help="another volume instead of the MNI152 template")
    p.add_argument("--prompt", action="append", default=None, help="prompt (repeatable; default: a demo set)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import BundleError
    from ..demo import run_demo
    from ..engine import InputError

    try:
        run_demo(Path(args.output), args.model, args.device, args.prompt, args.input)
    except (BundleError, InputError, OSError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    return 0
