"""The application layer: one batch path for the command line and the Slicer console.

``jobs``: inputs (files, folders, DICOM series, jobs files) -> jobs; ``validate``: every job checked before any
computing; ``models``: catalog ids -> bundle folders -> a Segmenter, in one place; ``runner``: the one batch runner
(resume, output locks, one progress signature, one cancel exception); writing goes through ``engine.writers``.

Example:
    >>> from TextSegmentLib.app import plan_jobs, validate_jobs, run_jobs, open_segmenter
    >>> jobs, batch = plan_jobs(["scans/"], ["brain"], "out/")  # doctest: +SKIP
    >>> summary = run_jobs(validate_jobs(jobs), lambda: open_segmenter("default"))  # doctest: +SKIP
"""

from .errors import RequestError
from .jobs import Job, case_name, expand_inputs, plan_jobs, read_jobs_file
from .models import open_segmenter, resolve_bundle
from .runner import BatchSummary, Outcome, output_problem, run_jobs, segment_case
from .validate import (
    check_ct_window,
    check_options,
    check_overlap,
    check_prompt_list,
    ct_window_from_text,
    validate_jobs,
)

__all__ = [
    "BatchSummary",
    "Job",
    "Outcome",
    "RequestError",
    "case_name",
    "check_ct_window",
    "check_options",
    "check_overlap",
    "check_prompt_list",
    "ct_window_from_text",
    "expand_inputs",
    "open_segmenter",
    "output_problem",
    "plan_jobs",
    "read_jobs_file",
    "resolve_bundle",
    "run_jobs",
    "segment_case",
    "validate_jobs",
]
