"""What to segment: input arguments (files, folders, DICOM series) and jobs files -> a list of :class:`Job`.

One list of readable formats (``engine.io.READABLE_SUFFIXES``) decides which files of a folder are scans; a
subfolder holding a DICOM series is one scan. Only regular files are ever taken from a folder.

Example:
    >>> case_name(Path("/data/case01.nii.gz")), case_name(Path("/data/ct/series7"))
    ('case01', 'series7')
"""

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

from ..engine.io import LABELMAP_SUFFIXES, READABLE_SUFFIXES
from .errors import RequestError

PathLike = Union[str, Path]
#: the keys of one job in a jobs file
JOB_KEYS = ("input", "prompts", "output")


@dataclass
class Job:
    """One case: an input (file or DICOM series folder), its prompts, and the labelmap to write (+ ``.json``)."""

    input: Path
    prompts: List[str]
    output: Path
    origin: str = ""  # where the job came from, for messages ("jobs.json, job 3")

    @property
    def report(self) -> Path:
        """The JSON report written next to the output."""
        return Path(str(self.output) + ".json")


def case_name(path: Path) -> str:
    """The name of a case: the file name without its image suffix, or the DICOM folder's name."""
    name = Path(path).name
    for suffix in READABLE_SUFFIXES + (".dcm",):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def is_dicom_folder(folder: Path) -> bool:
    """True when ``folder`` itself holds a DICOM series."""
    import SimpleITK as sitk

    return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def expand_inputs(inputs: Sequence[PathLike]) -> Tuple[List[Path], bool]:
    """Input arguments -> case paths (files and DICOM series folders), and whether the batch form applies (several
    inputs or a folder of scans: the output is then a folder). RequestError for a missing input or an empty folder.

    A folder's regular files with a readable suffix and its subfolders holding a DICOM series are its cases.
    """
    cases: List[Path] = []
    batch = len(inputs) > 1
    for arg in inputs:
        path = Path(arg)
        if not os.path.lexists(path):
            raise RequestError(f"input {path} does not exist")
        if path.is_dir() and not is_dicom_folder(path):
            batch = True
            found = sorted(
                q
                for q in path.iterdir()
                if (q.name.lower().endswith(READABLE_SUFFIXES) and _is_regular(q))
                or (q.is_dir() and is_dicom_folder(q))
            )
            if not found:
                raise RequestError(
                    f"folder {path} holds no image files ({', '.join(READABLE_SUFFIXES)}) or DICOM series folders"
                )
            cases.extend(found)
        else:
            cases.append(path)
    return cases, batch


def _job_field(job: dict, key: str, n: int, where: Path) -> Any:
    value = job.get(key)
    if key == "prompts":
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and value and all(isinstance(p, str) for p in value):
            return list(value)
        raise RequestError(f"{where}, job {n}: 'prompts' must be a text or a non-empty list of texts, got {value!r}")
    if value is None and key == "output":
        return None
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"{where}, job {n}: '{key}' must be a file path (text), got {value!r}")
    return value


def read_jobs_file(path: PathLike, output: Optional[PathLike] = None, fmt: str = ".nii.gz") -> List[Job]:
    """A jobs file: a JSON list of ``{"input", "prompts", "output"}`` with paths relative to the file. A job without
    ``output`` writes ``<output folder>/<case name><fmt>``. RequestError for anything malformed.

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "jobs.json"
        >>> _ = f.write_text('[{"input": "a.nii.gz", "prompts": "brain", "output": "a_labels.nrrd"}]')
        >>> [(j.input.name, j.prompts, j.output.name) for j in read_jobs_file(f)]
        [('a.nii.gz', ['brain'], 'a_labels.nrrd')]
    """
    where = Path(path)
    if os.path.exists(where) and not _is_regular(where):
        raise RequestError(f"jobs file {where} is not a regular file (a folder, FIFO or device); give a JSON file")
    try:
        data = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RequestError(f"cannot read jobs file {where}: {exc}") from exc
    except RecursionError:
        raise RequestError(f"jobs file {where} is nested too deeply to be a list of jobs; give a flat list") from None
    if not isinstance(data, list) or not data:
        raise RequestError(f"jobs file {where} must hold a non-empty JSON list of {{input, prompts, output}}")
    jobs = []
    for n, job in enumerate(data):
        if not isinstance(job, dict):
            raise RequestError(f"{where}, job {n}: must be an object {{input, prompts, output}}, got {job!r}")
        unknown = sorted(set(job) - set(JOB_KEYS))
        if unknown:
            raise RequestError(f"{where}, job {n}: unknown keys {unknown}; a job has {list(JOB_KEYS)}")
        source = where.parent / _job_field(job, "input", n, where)
        prompts = _job_field(job, "prompts", n, where)
        target = _job_field(job, "output", n, where)
        if target is not None:
            out = where.parent / target
        elif output is not None:
            out = Path(output) / (case_name(source) + fmt)
        else:
            raise RequestError(f"{where}, job {n}: has no 'output' and no output folder was given (--output)")
        jobs.append(Job(source, prompts, out, f"{where.name}, job {n}"))
    return jobs


def plan_jobs(
    inputs: Sequence[PathLike],
    prompts: Sequence[str],
    output: Optional[PathLike],
    fmt: str = ".nii.gz",
    jobs_file: Optional[PathLike] = None,
    folder_output: bool = False,
) -> Tuple[List[Job], bool]:
    """The jobs of one request and whether it is a batch (output folder) rather than one input (output file).
    ``folder_output``: ``output`` is a folder even for one input.

    Example:
        >>> jobs, batch = plan_jobs(["/data/case01.nii.gz"], ["brain"], "/out/case01_labels.nii.gz")  # doctest: +SKIP
    """
    if fmt not in LABELMAP_SUFFIXES:
        raise RequestError(f"output format {fmt!r} is unknown; use one of {', '.join(LABELMAP_SUFFIXES)}")
    if jobs_file is not None:
        if inputs:
            raise RequestError("give either input files or a jobs file, not both")
        return read_jobs_file(jobs_file, output, fmt), True
    if not inputs:
        raise RequestError("give at least one input (file, DICOM folder or folder of scans) or a jobs file")
    if output is None:
        raise RequestError("an output is needed: a file for one input, a folder for several")
    paths, batch = expand_inputs(inputs)
    batch = batch or folder_output
    out = Path(output)
    if not batch:
        return [Job(paths[0], list(prompts), out, str(paths[0]))], False
    if out.exists() and not out.is_dir():
        raise RequestError(f"output {out} must be a folder when segmenting several inputs")
    jobs = [Job(p, list(prompts), out / (case_name(p) + fmt), str(p)) for p in paths]
    # a batch written into its own input folder: a file that another case writes is that case's output (from an
    # earlier run), not a new input; an identical rerun then skips what is done instead of failing
    key = lambda p: os.path.normcase(os.path.abspath(p))  # noqa: E731
    written = {key(j.output) for j in jobs if key(j.output) != key(j.input)}
    jobs = [j for j in jobs if key(j.input) not in written]
    return jobs, True
