"""Validate a whole request before any computing: prompts, options, inputs and outputs of every job.

Everything that can be known before the model runs is checked here, so a batch never fails after an hour on
something it could have said at once, and nothing the user owns is at risk:

- prompts are text without control characters; options have the right types and finite values;
- every input exists and is a regular file or a folder (a FIFO or a device is never opened: it would block);
- every output ends in a labelmap suffix, is not a folder, and no two jobs write the same file;
- no output (nor its ``.json`` report) is an input of any job, by resolved path or by identity (a hard link or a
  symbolic link to an input is the input);
- every output folder exists or can be created, and can be written (tried with a temporary file, which is removed).

Example:
    >>> ct_window_from_text("40,400"), ct_window_from_text("lung")
    ((40.0, 400.0), 'lung')
"""

import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple, Union

from ..engine import options as engine_options
from ..engine.io import LABELMAP_SUFFIXES, suffix_of
from ..engine.labelmap import OVERLAP_ORDERS
from ..engine.writers import check_name_length, file_identity
from ..prompts import clean_prompt
from .errors import RequestError
from .jobs import Job


def check_prompt_list(prompts: Union[str, Sequence[Any]], where: str = "") -> List[str]:
    """Prompts as a clean, non-empty list of texts (white space collapsed); RequestError otherwise."""
    prefix = f"{where}: " if where else ""
    if not isinstance(prompts, (str, list, tuple)) and prompts is not None:
        raise RequestError(f"{prefix}prompts {prompts!r:.60} are not text: give a text or a list of texts")
    items = [prompts] if isinstance(prompts, str) else list(prompts or [])
    if not items:
        raise RequestError(f"{prefix}no prompt given; give at least one text prompt such as 'liver'")
    try:
        return [clean_prompt(p) for p in items]
    except ValueError as exc:
        raise RequestError(f"{prefix}{exc}") from exc


def check_ct_window(window: Any) -> Optional[Union[str, Tuple[float, float]]]:
    """None, a built-in window name, or (level, width) with finite numbers and width > 0 (the engine's check)."""
    try:
        return engine_options.check_ct_window(window)
    except ValueError as exc:
        raise RequestError(str(exc)) from None


def ct_window_from_text(text: Optional[str]) -> Optional[Union[str, Tuple[float, float]]]:
    """``--ct-window`` text: a window name or ``LEVEL,WIDTH``."""
    if not text:
        return None
    if "," in text:
        try:
            level, width = (float(v) for v in text.split(","))
        except ValueError:
            raise RequestError(f"--ct-window LEVEL,WIDTH expects two numbers, got {text!r}") from None
        return check_ct_window((level, width))
    return check_ct_window(text)


def check_options(options: Dict[str, Any]) -> Dict[str, Any]:
    """Segment options with checked names, types and values (the engine's one check,
    :func:`~TextSegmentLib.engine.options.check_options`; the engine's defaults fill the rest). RequestError."""
    try:
        return engine_options.check_options(options)
    except (TypeError, ValueError) as exc:
        raise RequestError(str(exc)) from None


def check_overlap(order: str) -> str:
    """An overlap order name (what a labelmap draws where segments overlap)."""
    if order not in OVERLAP_ORDERS:
        raise RequestError(f"overlap order {order!r} is unknown; use one of {list(OVERLAP_ORDERS)}")
    return order


# --- inputs and outputs ----------------------------------------------------------------------------------------------
def check_input(path: Path, where: str) -> None:
    """An input exists and is a regular file or a folder; a FIFO, device or socket is refused, never opened."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise RequestError(f"{where}: input {path} does not exist") from None
    except OSError as exc:
        raise RequestError(f"{where}: input {path} cannot be read ({exc.strerror})") from exc
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        raise RequestError(
            f"{where}: input {path} is {kind}, not an image file; give a NIfTI, NRRD, MHA file or a DICOM folder"
        )


def _input_identities(jobs: Sequence[Job]) -> Tuple[Dict[Tuple[int, int], Path], Set[str]]:
    """Identities (device, inode) and resolved paths of every input file, including the files of DICOM folders."""
    ids: Dict[Tuple[int, int], Path] = {}
    paths: Set[str] = set()
    for job in jobs:
        files = [job.input]
        if job.input.is_dir():
            files = [p for p in job.input.iterdir() if p.is_file()]
        for f in files:
            key = file_identity(f)
            if key is not None:
                ids.setdefault(key, job.input)
            paths.add(os.path.normcase(os.path.realpath(f)))
    return ids, paths


def _writable_folder(folder: Path) -> Optional[str]:
    """None when files can be created in ``folder`` (or in the folders that will be made for it), else why not."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return f"{folder} cannot be created"
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, so the folder {folder} cannot be created"
    try:
        fd, name = tempfile.mkstemp(prefix=".textsegment-write-test-", dir=str(probe))
    except OSError as exc:
        return f"{probe} cannot be written ({exc.strerror})"
    os.close(fd)
    os.remove(name)
    return None


def check_outputs(jobs: Sequence[Job]) -> None:
    """Every output: a labelmap suffix, not a folder, written by one job only, never an input (by path or by identity),
    in a folder that exists or can be made and can be written. RequestError naming the job otherwise."""
    ids, paths = _input_identities(jobs)
    seen: Dict[str, Job] = {}
    folders: Dict[Path, Optional[str]] = {}
    for job in jobs:
        out = job.output
        if suffix_of(out) not in LABELMAP_SUFFIXES:
            raise RequestError(
                f"{job.origin}: output {out} must end in one of {', '.join(LABELMAP_SUFFIXES)} (a labelmap format)"
            )
        try:
            check_name_length(out)
        except OSError as exc:
            raise RequestError(f"{job.origin}: {exc}") from None
        if out.is_dir() or job.report.is_dir():
            folder = out if out.is_dir() else job.report
            raise RequestError(f"{job.origin}: output {folder} is an existing folder; give a file name (a folder is "
                               "never replaced, even with --overwrite)")  # fmt: skip
        key = os.path.normcase(os.path.realpath(out))
        if key in seen:
            raise RequestError(
                f"{job.origin} and {seen[key].origin} both write {out}; give each job its own output (nothing was "
                "computed)"
            )
        seen[key] = job
        for target in (out, job.report):
            same = ids.get(file_identity(target)) if os.path.exists(target) else None
            if same is not None or os.path.normcase(os.path.realpath(target)) in paths:
                raise RequestError(
                    f"{job.origin}: output {target} is the input {same or target} (the same file); an input is "
                    "never written: choose another output file or folder"
                )
        folder = out.parent
        if folder not in folders:
            folders[folder] = _writable_folder(folder)
        if folders[folder]:
            raise RequestError(
                f"{job.origin}: output {out} cannot be written: {folders[folder]}; choose another folder"
            )


def validate_jobs(jobs: Sequence[Job]) -> List[Job]:
    """Check every job completely (prompts, inputs, outputs) before anything is computed; returns the jobs with clean
    prompts. RequestError with a message naming the job and the problem."""
    if not jobs:
        raise RequestError("there is nothing to segment")
    checked = []
    for job in jobs:
        check_input(job.input, job.origin or str(job.input))
        prompts = check_prompt_list(job.prompts, job.origin or str(job.input))
        checked.append(Job(job.input, prompts, job.output, job.origin or str(job.input)))
    check_outputs(checked)
    return checked
