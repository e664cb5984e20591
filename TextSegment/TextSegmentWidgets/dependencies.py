"""First-use setup: ask, then PyTorch through the PyTorch extension (never a plain pip install of torch), then the rest.

What is needed and which versions is decided by ``TextSegmentLib.requirements`` (no Qt, tested under pytest); this
file only asks and installs.
"""

import slicer

from TextSegmentLib.requirements import TORCH, problems


def dependencyProblems() -> list:
    """Messages for what is missing or too old (empty: ready); nothing is imported or installed."""
    return [problem.message() for problem in problems()]


def ensureDependencies() -> bool:
    """Install what is missing or too old after asking; True when TextSegment can run now.

    PyTorch comes through the PyTorch extension (``PyTorchUtils``, which picks the build that matches the GPU driver).
    An installed PyTorch that is too old is updated the same way, after which Slicer must be restarted.
    """
    found = problems()
    if not found:
        return True
    torchProblem = next((p for p in found if p.requirement == TORCH), None)
    others = [p for p in found if p.requirement != TORCH]
    text = "TextSegment needs these Python packages:\n\n" + "\n".join(f"- {p.message()}" for p in found)
    text += "\n\nDownload and install them now? PyTorch can take several minutes and a few GB."
    if not slicer.util.confirmOkCancelDisplay(text, "TextSegment: install dependencies"):
        return False
    with slicer.util.WaitCursor():
        if torchProblem is not None:
            try:
                import PyTorchUtils
            except ImportError as exc:
                raise RuntimeError(
                    "TextSegment needs the PyTorch extension: install 'PyTorch' from the Extensions Manager, restart "
                    "Slicer, and try again"
                ) from exc
            torchLogic = PyTorchUtils.PyTorchUtilsLogic()
            if torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=f">={TORCH.minimum}") is None:
                raise RuntimeError("PyTorch could not be installed; see the Python console for the reason")
        for problem in others:
            requirement = problem.requirement
            slicer.util.pip_install([requirement.pip, "--no-deps"] if requirement.no_deps else [requirement.pip])
    if torchProblem is not None and not torchProblem.missing:
        slicer.util.infoDisplay(
            f"PyTorch was updated (from {torchProblem.found}). Restart Slicer to use the new version.",
            "TextSegment: restart needed",
        )
        return False
    return not problems()
