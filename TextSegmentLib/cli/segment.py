"""``segment``: text-prompted segmentation of one volume, a folder of volumes, or a jobs file.

    python -m TextSegmentLib segment CT.nii.gz --prompt liver --prompt "right kidney" --output liver.seg.nrrd
    python -m TextSegmentLib segment scans/ --prompt brain --output out/ --shard 0/4

One input -> ``--output`` is a file (.nii.gz, .nii, .nrrd, .seg.nrrd, .mha; .dcm: a DICOM Segmentation object);
several inputs or a folder -> ``--output`` is a folder (one ``<name><--format>`` per case). A ``<output>.json``
report goes next to every labelmap.
Every job is checked before anything is computed (exit code 2 and nothing written for bad input or options).
Existing complete outputs are skipped unless ``--overwrite`` (so a crashed batch resumes); a failing case does not
stop a batch (exit code 1 at the end). The work itself is the application layer's (:mod:`TextSegmentLib.app`).
"""

import argparse
import sys
from typing import Any, Dict, Optional, Tuple

from .main import UsageError

FORMATS = [".nii.gz", ".nrrd", ".seg.nrrd", ".nii", ".mha", ".dcm"]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("segment", help="segment volumes from text prompts (one file, a folder, or a jobs file)")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files (NIfTI, NRRD, MHA), DICOM folders, folders")
    p.add_argument("--prompt", action="append", default=[], help="what to segment; repeat for several structures")
    p.add_argument("--output", help="output file (one input) or folder (several inputs, a folder, --jobs)")
    p.add_argument("--jobs", help="JSON file: a list of {input, prompts, output}")
    p.add_argument("--model", default="default", help="model catalog id or bundle folder (default: default)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "float32", "bfloat16"],
        help="auto (default): bfloat16 on a CPU that computes it natively (about twice as fast; masks agree with "
        "float32 to Dice 0.99), float32 elsewhere; float32: the reference precision everywhere",
    )
    p.add_argument(
        "--conform-oblique",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="resample a volume tilted by more than 5 degrees onto the anatomical axes before segmenting (the "
        "masks are resampled back onto its grid; the default); --no-conform-oblique reads it on its nearest axes "
        "with tilted slices",
    )
    p.add_argument(
        "--no-align-head",
        dest="align_head",
        action="store_false",
        help="keep an MR head that is turned by more than 10 degrees on the input's grid; default (for models whose "
        "card asks for it): find how the head is turned (about 1 s) and segment it on the head's own axes",
    )
    p.add_argument(
        "--no-mirror",
        dest="mirror",
        action="store_false",
        default=None,
        help="segment each volume once; default (for models whose card asks for it): also segment it mirrored "
        "left-right, with left and right swapped in the prompt, and average the two (more accurate; a further "
        "prompt takes 1.7x the time)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    p.add_argument("--shard", help="i/n: process only cases i, i+n, i+2n, ... (0 <= i < n), for cluster job arrays")
    p.add_argument("--format", default=".nii.gz", choices=FORMATS, help="output type of each case in an output folder")
    p.add_argument(
        "--overlap",
        default="smaller",
        choices=["smaller", "confident", "first"],
        help="what a labelmap shows where segments overlap: the smaller segment (default), the more confident one, or "
        "the earlier prompt (.seg.nrrd keeps every segment whole in layers)",
    )
    p.add_argument(
        "--views",
        help="planes to segment and fuse, comma-separated (axial,coronal,sagittal); default: the planes the model "
        "was trained on",
    )
    p.add_argument("--slice-axis", choices=["axial", "coronal", "sagittal"], help="one plane only (same as --views)")
    p.add_argument(
        "--prompt-text",
        choices=["matched", "raw"],
        default="matched",
        help="matched (default): a prompt naming a structure the model knows is given to it as that name, however "
        "long the sentence; raw: the model reads the prompt as typed",
    )
    p.add_argument("--ct-window", help="CT window name (soft_tissue, lung, bone, brain) or LEVEL,WIDTH")
    p.add_argument("--batch-size", type=int, default=16, help="slices per model batch (default 16)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_shard(text: Optional[str]) -> Optional[Tuple[int, int]]:
    if not text:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard must look like i/n (for example 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {text}: need 0 <= i < n")
    return i, n


def _options(args: argparse.Namespace) -> Dict[str, Any]:
    from ..app import RequestError, ct_window_from_text

    options: Dict[str, Any] = {"prompt_text": args.prompt_text}
    if args.mirror is not None:
        options["mirror"] = args.mirror
    if args.slice_axis:
        options["slice_axis"] = args.slice_axis
    if args.views:
        views = tuple(v.strip() for v in args.views.split(",") if v.strip())
        bad = sorted(set(views) - {"axial", "coronal", "sagittal"})
        if bad or not views:
            raise UsageError(f"--views {args.views}: give planes from axial, coronal, sagittal, comma-separated")
        options["views"] = views
    try:
        window = ct_window_from_text(args.ct_window)
    except RequestError as exc:
        raise UsageError(f"--ct-window {args.ct_window}: {exc}") from exc
    if window is not None:
        options["ct_window"] = window
    return options


def segment_table(segments) -> str:
    """The per-prompt table printed after a single case: label, prompt, found, volume, confidence, and how the prompt
    was read (term, side and how the side was read)."""
    rows = [("#", "prompt", "result", "mL", "conf.", "read as")]
    for seg in segments:
        state = "found" if seg.found else "NOT FOUND"
        rows.append((str(seg.label), repr(seg.prompt), state, f"{seg.volume_ml:.1f}", f"{seg.confidence:.2f}",
                     getattr(seg, "reading", "") or ""))  # fmt: skip
    widths = [max(len(r[c]) for r in rows) for c in range(5)]
    return "\n".join("  " + "  ".join(r[c].ljust(widths[c]) for c in range(5)) + "  " + r[5] for r in rows)


def _print_written(outcome) -> None:
    output = outcome.job.output
    print(f"wrote {output} and {output}.json")
    print(segment_table(outcome.segments))


def run(args: argparse.Namespace) -> int:
    from ..app import RequestError, plan_jobs, run_jobs, validate_jobs
    from ..catalog import DownloadError
    from ..device import DeviceUnavailable, resolve_device
    from ..progress import Cancelled

    if args.batch_size < 1:
        raise UsageError("--batch-size must be >= 1")
    try:
        resolve_device(args.device)  # before anything is read or computed
    except DeviceUnavailable as exc:
        raise UsageError(str(exc)) from None
    try:
        options = _options(args)
        jobs, batch = plan_jobs(args.inputs, args.prompt, args.output, args.format, args.jobs)
        shard = parse_shard(args.shard)
        if shard:
            jobs = jobs[shard[0] :: shard[1]]
        jobs = validate_jobs(jobs)
    except RequestError as exc:
        raise UsageError(str(exc)) from exc
    bar = _progress_bar(len(jobs), args.no_progress or not batch)

    def on_outcome(outcome) -> None:
        bar.update(1)
        if not batch and outcome.state == "written":
            _print_written(outcome)
        for warning in outcome.warnings:
            print(f"warning: {outcome.job.output}: {warning}", file=sys.stderr)

    try:
        summary = run_jobs(
            jobs, lambda: _load(args), options, args.overwrite, args.overlap, None, None, on_outcome
        )  # fmt: skip
    except Cancelled:
        print("cancelled; outputs written so far are complete, nothing else was changed", file=sys.stderr)
        return 130
    except DownloadError as exc:
        print(f"error: model '{args.model}' cannot be downloaded: {exc}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    skipped = summary.count("skipped")
    if skipped:
        print(f"skipped {skipped} case(s) whose output exists (use --overwrite to redo them)", file=sys.stderr)
    if not summary.count("written") and not summary.exit_code:
        print("nothing to do", file=sys.stderr)
    failures = [o for o in summary.outcomes if o.state in ("failed", "busy")]
    if not batch and failures:
        if failures[0].bad_input:
            raise UsageError(failures[0].message)
        print(f"error: {failures[0].message}", file=sys.stderr)
        return 1
    if batch:
        print(summary.line(), file=sys.stderr)
        for outcome in failures:
            print(f"  FAILED {outcome.job.input}: {outcome.message}", file=sys.stderr)
    return summary.exit_code


def _load(args: argparse.Namespace):
    """The model, resolved and loaded once (only when some case needs computing)."""
    from ..app import open_segmenter
    from ..catalog import CatalogError
    from ..checkpoint import BundleError

    try:
        return open_segmenter(
            args.model,
            device=args.device,
            batch_size=args.batch_size,
            precision=args.precision,
            conform_oblique=args.conform_oblique,
            align_head=args.align_head,
        )
    except (BundleError, CatalogError) as exc:
        raise UsageError(f"model '{args.model}': {exc}") from exc


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, disabled: bool):
    if disabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, unit="case", file=sys.stderr)
