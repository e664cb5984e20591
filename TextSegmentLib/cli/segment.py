"""``segment``: text-prompted segmentation of one volume, a folder of volumes, or a jobs file.

    python -m TextSegmentLib segment CT.nii.gz --prompt liver --prompt "right kidney" --output liver.seg.nrrd
    python -m TextSegmentLib segment scans/ --prompt brain --output out/ --shard 0/4

One input -> ``--output`` is a file (.nii.gz, .nii, .nrrd, .seg.nrrd, .mha); several inputs or a folder ->
``--output`` is a folder (one ``<name><--format>`` per case). A ``<output>.json`` report goes next to every labelmap.
Existing outputs are skipped unless ``--overwrite`` (so a crashed batch resumes); a failing case does not stop a batch
(exit code 1 at the end). Bad usage or a bad single input: exit code 2, nothing written.
"""

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..engine.io import IMAGE_SUFFIXES, LABELMAP_SUFFIXES, suffix_of
from .main import UsageError

log = logging.getLogger(__name__)

Case = Dict[str, Any]  # {"input": str, "prompts": [str], "output": Path}


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("segment", help="segment volumes from text prompts (one file, a folder, or a jobs file)")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files (NIfTI, NRRD, MHA), DICOM folders, folders")
    p.add_argument("--prompt", action="append", default=[], help="what to segment; repeat for several structures")
    p.add_argument("--output", help="output file (one input) or folder (several inputs, a folder, --jobs)")
    p.add_argument("--jobs", help="JSON file: a list of {input, prompts, output}")
    p.add_argument("--model", default="default", help="model catalog id or bundle folder (default: default)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    p.add_argument("--shard", help="i/n: process only cases i, i+n, i+2n, ... (0 <= i < n), for cluster job arrays")
    p.add_argument(
        "--format",
        default=".nii.gz",
        choices=[".nii.gz", ".nrrd", ".seg.nrrd", ".nii", ".mha"],
        help="output type of each case when --output is a folder",
    )
    p.add_argument("--slice-axis", choices=["axial", "coronal", "sagittal"], help="slice direction (default: model's)")
    p.add_argument("--ct-window", help="CT window name (soft_tissue, lung, bone, brain) or LEVEL,WIDTH")
    p.add_argument("--batch-size", type=int, default=8, help="slices per model batch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _case_name(path: Path) -> str:
    suffix = suffix_of(path)
    return path.name[: -len(suffix)] if suffix and path.name.lower().endswith(suffix) else path.name


def _is_dicom_folder(folder: Path) -> bool:
    import SimpleITK as sitk

    return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def expand_inputs(inputs: List[str]) -> Tuple[List[Path], bool]:
    """Input arguments -> case paths (files and DICOM folders); True when the batch form (folder output) applies."""
    cases: List[Path] = []
    batch = len(inputs) > 1
    for arg in inputs:
        path = Path(arg)
        if not path.exists():
            raise UsageError(f"input {path} does not exist")
        if path.is_dir() and not _is_dicom_folder(path):
            batch = True
            found = sorted(
                q
                for q in path.iterdir()
                if (q.is_file() and suffix_of(q) in IMAGE_SUFFIXES and suffix_of(q) != ".dcm")
                or (q.is_dir() and _is_dicom_folder(q))
            )
            if not found:
                raise UsageError(f"folder {path} holds no image files or DICOM series")
            cases.extend(found)
        else:
            cases.append(path)
    return cases, batch


def read_jobs(path: str, output: Optional[str], fmt: str) -> List[Case]:
    """Read a jobs file: a JSON list of {"input", "prompts", "output"} (paths relative to the file)."""
    jobs_path = Path(path)
    try:
        data = json.loads(jobs_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read jobs file {jobs_path}: {exc}") from exc
    if not isinstance(data, list) or not data:
        raise UsageError(f"jobs file {jobs_path} must hold a non-empty JSON list of {{input, prompts, output}}")
    base = jobs_path.parent
    cases = []
    for n, job in enumerate(data):
        if not isinstance(job, dict) or "input" not in job or "prompts" not in job:
            raise UsageError(f"job {n} in {jobs_path} needs 'input' and 'prompts'")
        prompts = [job["prompts"]] if isinstance(job["prompts"], str) else list(job["prompts"])
        inp = base / job["input"]
        if job.get("output"):
            out = base / job["output"]
        elif output:
            out = Path(output) / (_case_name(inp) + fmt)
        else:
            raise UsageError(f"job {n} in {jobs_path} has no 'output' and no --output folder was given")
        cases.append({"input": str(inp), "prompts": prompts, "output": out})
    return cases


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


def parse_window(text: Optional[str]) -> Any:
    if not text:
        return None
    if "," in text:
        try:
            level, width = (float(v) for v in text.split(","))
        except ValueError:
            raise UsageError(f"--ct-window LEVEL,WIDTH expects two numbers, got {text!r}") from None
        if width <= 0:
            raise UsageError("--ct-window width must be positive")
        return (level, width)
    from ..imaging import CT_WINDOWS

    if text not in CT_WINDOWS:
        raise UsageError(f"--ct-window {text!r} is unknown; use one of {sorted(CT_WINDOWS)} or LEVEL,WIDTH")
    return text


def build_cases(args: argparse.Namespace) -> Tuple[List[Case], bool]:
    """All cases of this call (before sharding) and whether this is a batch."""
    from ..engine import InputError, check_prompts

    if args.jobs:
        if args.inputs:
            raise UsageError("give either INPUT files or --jobs, not both")
        cases = read_jobs(args.jobs, args.output, args.format)
        for case in cases:
            try:
                case["prompts"] = check_prompts(case["prompts"])
            except InputError as exc:
                raise UsageError(f"{case['input']}: {exc}") from exc
        return cases, True
    if not args.inputs:
        raise UsageError("give at least one INPUT (file, DICOM folder or folder) or --jobs FILE")
    try:
        prompts = check_prompts(args.prompt)
    except InputError as exc:
        raise UsageError(f"{exc} (use --prompt TEXT)") from exc
    if not args.output:
        raise UsageError("--output is required: a file for one input, a folder for several")
    paths, batch = expand_inputs(args.inputs)
    out = Path(args.output)
    if not batch:
        if suffix_of(out) not in LABELMAP_SUFFIXES:
            raise UsageError(f"--output {out} must end in one of {', '.join(LABELMAP_SUFFIXES)} for a single input")
        return [{"input": str(paths[0]), "prompts": prompts, "output": out}], False
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output {out} must be a folder when segmenting several inputs")
    names = [_case_name(p) for p in paths]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"several inputs have the same name {dupes[:3]}; use a --jobs file with explicit outputs")
    return [
        {"input": str(p), "prompts": prompts, "output": out / (n + args.format)} for p, n in zip(paths, names)
    ], True


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import BundleError
    from ..engine import InputError, Segmenter

    cases, batch = build_cases(args)
    shard = parse_shard(args.shard)
    window = parse_window(args.ct_window)
    if args.batch_size < 1:
        raise UsageError("--batch-size must be >= 1")
    if shard:
        cases = cases[shard[0] :: shard[1]]
    todo = [c for c in cases if args.overwrite or not Path(c["output"]).exists()]
    skipped = len(cases) - len(todo)
    if skipped:
        print(f"skipping {skipped} case(s) whose output exists (use --overwrite to redo them)", file=sys.stderr)
    if not todo:
        print("nothing to do", file=sys.stderr)
        return 0
    try:
        segmenter = Segmenter(args.model, device=args.device, batch_size=args.batch_size)
    except (BundleError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    options: Dict[str, Any] = {}
    if args.slice_axis:
        options["slice_axis"] = args.slice_axis
    if window is not None:
        options["ct_window"] = window

    if not batch:
        case = todo[0]
        try:
            result = segmenter.segment(case["input"], case["prompts"], **options)
        except InputError as exc:
            raise UsageError(str(exc)) from exc
        result.save(case["output"], overwrite=args.overwrite)
        _print_result(case, result)
        return 0

    failures: List[Tuple[str, str]] = []
    bar = _progress_bar(len(todo), args.no_progress)
    for case in todo:
        try:
            result = segmenter.segment(case["input"], case["prompts"], **options)
            result.save(case["output"], overwrite=args.overwrite)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one failing case must not stop the batch
            failures.append((case["input"], f"{type(exc).__name__}: {exc}"))
            log.debug("case %s failed", case["input"], exc_info=True)
        bar.update(1)
    bar.close()
    done = len(todo) - len(failures)
    print(f"segmented {done}, skipped {skipped}, failed {len(failures)} of {len(cases)} case(s)", file=sys.stderr)
    for path, message in failures:
        print(f"  FAILED {path}: {message}", file=sys.stderr)
    return 1 if failures else 0


def _print_result(case: Case, result) -> None:
    print(f"wrote {case['output']} and {case['output']}.json")
    for seg in result.segments:
        state = "found" if seg.found else "NOT FOUND"
        print(f"  {seg.label}: {seg.prompt!r}: {state}, {seg.volume_ml:.1f} ml, confidence {seg.confidence:.2f}")


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
