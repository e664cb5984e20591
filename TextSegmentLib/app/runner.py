"""The one batch runner of the command line and the Slicer console: validated jobs -> verified outputs.

For each job: skip it when its output is already complete (so a crashed batch resumes), refuse to touch an output
that exists but is damaged (unless ``overwrite``), take the output's lock (a second run writing the same output is
told so and changes nothing), segment, and write the labelmap and its report, each read back before the rename.
One failing case does not stop the batch. Progress is ``progress(fraction, message)``, cancel raises
:class:`~TextSegmentLib.progress.Cancelled` between steps.

The model card's CT windows (``input.ct_windows``) are honoured here: when they differ from the built-in table,
prompts are segmented in groups, each with its window given explicitly.
"""

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from ..filelock import Busy, ExclusiveFile, NotALock
from ..progress import CancelFn, Cancelled, ProgressFn, check_cancel
from .jobs import Job

log = logging.getLogger(__name__)

WRITTEN, SKIPPED, FAILED, BUSY = "written", "skipped", "failed", "busy"


@dataclass
class Outcome:
    """What happened to one job. ``bad_input``: it failed because its input was refused (exit code 2 for a single
    input); ``segments``: the engine's per-prompt reports; ``warnings``: e.g. segments hidden in the labelmap."""

    job: Job
    state: str
    message: str = ""
    bad_input: bool = False
    segments: List[Any] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)


@dataclass
class BatchSummary:
    """All outcomes of a run; ``exit_code`` 0 when nothing failed, else 1."""

    outcomes: List[Outcome]

    def count(self, state: str) -> int:
        return sum(o.state == state for o in self.outcomes)

    @property
    def written(self) -> List[Path]:
        return [o.job.output for o in self.outcomes if o.state == WRITTEN]

    @property
    def exit_code(self) -> int:
        return 1 if any(o.state in (FAILED, BUSY) for o in self.outcomes) else 0

    def line(self) -> str:
        return (
            f"segmented {self.count(WRITTEN)}, skipped {self.count(SKIPPED)}, failed "
            f"{self.count(FAILED) + self.count(BUSY)} of {len(self.outcomes)} case(s)"
        )


def output_problem(job: Job) -> Optional[str]:
    """None when the job's output and report are complete (the job is done); else what is wrong with them."""
    from ..engine.errors import InputError
    from ..engine.readcheck import check_image_file

    try:
        check_image_file(job.output)
    except InputError as exc:
        return str(exc)
    if str(job.output).lower().endswith(".dcm"):  # a DICOM SEG: its header must read as one
        from ..engine.dicomseg import seg_problem

        problem = seg_problem(job.output)
        if problem:
            return problem
    try:
        json.loads(job.report.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"its report {job.report} is missing or damaged ({exc})"
    return None


def _missing_folders(folder: Path) -> List[Path]:
    """``folder`` and its parents that do not exist yet, deepest first."""
    missing = []
    probe = folder
    while not probe.exists() and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    return missing


def _remove_empty(folders: List[Path]) -> None:
    """Remove folders this run created that stayed empty (a failed case leaves nothing behind)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def segment_case(
    segmenter: Any,
    source: Any,
    prompts: Sequence[str],
    progress: ProgressFn = None,
    cancel: CancelFn = None,
    **options: Any,
) -> Any:
    """``segmenter.segment`` of one case: each prompt is read once here (a typed query per prompt, see
    :func:`TextSegmentLib.prompts.parse_query`), and the queries travel to the engine, the writers and the Slicer
    logic (the engine honours the model card's CT windows)."""
    queries = segmenter.parse(list(prompts)) if hasattr(segmenter, "parse") else list(prompts)
    return segmenter.segment(source, queries, progress=progress, cancel=cancel, **options)


def run_jobs(
    jobs: Sequence[Job],
    segmenter: Union[Any, Callable[[], Any]],
    options: Optional[Dict[str, Any]] = None,
    overwrite: bool = False,
    overlap: str = "smaller",
    progress: ProgressFn = None,
    cancel: CancelFn = None,
    on_outcome: Optional[Callable[[Outcome], None]] = None,
) -> BatchSummary:
    """Run validated jobs (see :func:`~TextSegmentLib.app.validate.validate_jobs`); returns every outcome.

    ``segmenter`` is a Segmenter or a function that makes one (called once, only when some job needs computing).

    Example:
        >>> summary = run_jobs(jobs, lambda: open_segmenter("default"))  # doctest: +SKIP
        >>> summary.exit_code, summary.written  # doctest: +SKIP
        (0, [PosixPath('out/case01.nii.gz')])
    """
    from ..engine.errors import InputError
    from ..engine.writers import check_targets, input_files, save_result

    options = dict(options or {})
    outcomes: List[Outcome] = []

    def finish(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    todo = []
    for job in jobs:
        if overwrite or not os.path.lexists(job.output):
            try:  # a folder or a user's file at the report's name, a name too long: known before any computing
                check_targets(job.output, overwrite, input_files(job.input))
            except (ValueError, OSError) as exc:
                finish(Outcome(job, FAILED, f"{exc}; nothing was computed for it"))
                continue
            todo.append(job)
            continue
        problem = output_problem(job)
        if problem is None:
            finish(Outcome(job, SKIPPED, "its output exists (use --overwrite to redo it)"))
        else:
            finish(Outcome(job, FAILED, f"{job.output} exists but is not complete: {problem}; delete it or use "
                                        "--overwrite to redo it"))  # fmt: skip
    engine = None
    for n, job in enumerate(todo):
        check_cancel(cancel)
        if progress is not None:
            progress(n / len(todo), f"{job.input.name} ({n + 1}/{len(todo)})")
        if engine is None:
            engine = segmenter if hasattr(segmenter, "segment") else segmenter()
        part = None
        if progress is not None:
            part = lambda f, m, n=n: progress((n + 0.9 * f) / len(todo), m)  # noqa: E731
        made = _missing_folders(job.output.parent)
        try:
            job.output.parent.mkdir(parents=True, exist_ok=True)  # the umask's mode
            with ExclusiveFile(job.output):
                if not overwrite and os.path.lexists(job.output):
                    finish(Outcome(job, SKIPPED, "another run wrote its output meanwhile"))
                    continue
                result = segment_case(engine, str(job.input), job.prompts, part, cancel, **options)
                report = save_result(result, job.output, overwrite=overwrite, overlap=overlap)
            finish(Outcome(job, WRITTEN, segments=list(result.segments), warnings=list(report.get("warnings", []))))
        except Cancelled:
            raise
        except Busy as exc:
            finish(Outcome(job, BUSY, str(exc)))
        except NotALock as exc:
            finish(Outcome(job, FAILED, str(exc)))
        except InputError as exc:
            finish(Outcome(job, FAILED, str(exc), bad_input=True))
        except Exception as exc:  # noqa: BLE001 - one failing case must not stop the batch
            log.debug("case %s failed", job.input, exc_info=True)
            finish(Outcome(job, FAILED, f"{type(exc).__name__}: {exc}"))
        finally:
            _remove_empty(made)
    summary = BatchSummary(outcomes)
    if progress is not None:
        progress(1.0, summary.line())
    return summary
