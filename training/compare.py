"""Score candidate bundles side by side on the validation variants of several banks (never the MNI152).

    python -m training.compare --bank fixed=training/cache/brain_v2_bank --bank edges=training/cache/brain_v12_bank \
        TextSegmentLib/resources/models/<shipped id> training/runs/cand/<candidate>

Each bundle segments the deep grey structures, the whole brain and the cerebellum (``validate3d.CHOICE``) whole, three
views, at the engine's default mask threshold, on the first ``--limit`` validation variants of each bank, as the real
image and as a T2-like synthesis; a bank's score is the mean of the two. Prints a markdown table (one row per bundle,
one column per bank); the first bank is the choice set (what a candidate must beat the shipped model on).
"""

import argparse
import logging
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import torch

from TextSegmentLib.checkpoint import BundleError, check_bundle, load_bundle

from .validate3d import choice_scores


def score(bundle: Path, banks: Sequence[Tuple[str, Path]], limit: int) -> Dict[str, float]:
    """{bank name: mean Dice of CHOICE over T1 and T2-like} of one bundle (``validate3d.choice_scores``)."""
    model = load_bundle(Path(bundle), torch.device("cpu")).requires_grad_(False)
    return {name: choice_scores(model, folder, limit)["mean"] for name, folder in banks}


def table(rows: Dict[str, Dict[str, float]], banks: List[str]) -> str:
    """Markdown table of :func:`score` results.

    Example:
        >>> print(table({"a": {"fixed": 0.75, "edges": 0.5}}, ["fixed", "edges"]))
        | bundle | fixed | edges |
        |---|---|---|
        | a | 0.7500 | 0.5000 |
    """
    lines = ["| bundle | " + " | ".join(banks) + " |", "|---" * (len(banks) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[b]:.4f}" for b in banks) + " |")
    return "\n".join(lines)


def _bank(text: str) -> Tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not Path(folder, "bank.json").is_file():
        raise argparse.ArgumentTypeError(f"--bank {text!r}: give NAME=FOLDER, a folder holding a bank.json")
    return name, Path(folder)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundles", nargs="+", type=Path, help="bundle folders (model.json + model.safetensors)")
    parser.add_argument("--bank", type=_bank, action="append", required=True, help="NAME=FOLDER (repeatable)")
    parser.add_argument("--limit", type=int, default=4, help="validation variants per bank (default 4)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(max(1, args.threads))
    for bundle in args.bundles:
        try:
            check_bundle(bundle)
        except BundleError as exc:
            parser.error(f"{bundle} is not a model bundle ({exc}); export a run first (training.export)")
    rows = {}
    for bundle in args.bundles:
        rows[bundle.name] = score(bundle, args.bank, args.limit)
        print(bundle.name, rows[bundle.name], flush=True)
    print(table(rows, [name for name, _ in args.bank]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
