"""The demo: segment a few brain structures from text on a real MRI that ships with a Python package.

The volume is nilearn's MNI152-2009 T1 template, which the default model never saw in training (it is the held-out
image of the accuracy report). The demo writes the labelmap, its JSON report and a PNG with the segments drawn over
three orthogonal slices, and prints what was found where.

Example:
    >>> from TextSegmentLib.demo import DEMO_PROMPTS
    >>> "liver" in DEMO_PROMPTS  # an abdominal organ: must come back "not found" on a brain MRI
    True
"""

import importlib.util
import os
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

from .imaging import to_canonical

DEMO_PROMPTS = ["left hippocampus", "right hippocampus", "left putamen", "right thalamus", "cerebellum", "liver"]
MNI152_FILE = "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
#: the files the demo writes into its output folder
DEMO_FILES = ("segments.nii.gz", "segments.nii.gz.json", "segments.png")
COLORS = [(0.9, 0.2, 0.2), (0.2, 0.6, 1.0), (1.0, 0.8, 0.1), (0.3, 0.9, 0.3), (0.8, 0.3, 0.9), (1.0, 0.5, 0.0)]


def demo_volume() -> Path:
    """Path of the MNI152 T1 shipped by the ``nilearn`` package (found without importing nilearn)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the demo volume comes with the 'nilearn' package: pip install nilearn")
    path = Path(list(spec.submodule_search_locations)[0]) / MNI152_FILE
    if not path.is_file():
        raise FileNotFoundError(f"nilearn is installed but holds no MNI152 template at {path}")
    return path


def render_overlay(result, title: str, path: Path) -> Path:
    """PNG of axial, coronal and sagittal slices through the found segments, each segment in its own colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import SimpleITK as sitk

    volume = result.volume
    image = to_canonical(sitk.GetArrayFromImage(volume.image).astype(np.float32), volume.reorientation)
    labels = to_canonical(sitk.GetArrayFromImage(result.labelmap), volume.reorientation)
    found = [s for s in result.segments if s.found]
    centre = np.array(image.shape) // 2
    if found:
        centre = np.round(np.argwhere(labels == found[0].label).mean(axis=0)).astype(int)
    sx, sy, sz = volume.reorientation.canonical_spacing(volume.image.GetSpacing())
    views = [  # (name, image slice, label slice, aspect); canonical array is (S, P, L)
        ("axial", image[centre[0]], labels[centre[0]], sy / sx),
        ("coronal", image[::-1, centre[1]], labels[::-1, centre[1]], sz / sx),
        ("sagittal", image[::-1, :, centre[2]], labels[::-1, :, centre[2]], sz / sy),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 5))
    for ax, (name, img, lab, aspect) in zip(axes, views):
        ax.imshow(img, cmap="gray", aspect=aspect)
        rgba = np.zeros(lab.shape + (4,))
        for seg in found:
            rgba[lab == seg.label] = (*COLORS[(seg.label - 1) % len(COLORS)], 0.55)
        ax.imshow(rgba, aspect=aspect)
        ax.set_title(name)
        ax.axis("off")
    axes[0].text(2, 10, "R", color="w")  # radiological convention: patient's right on the image's left
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=COLORS[(s.label - 1) % len(COLORS)]) for s in result.segments if s.found
    ]
    if found:
        fig.legend(handles, [s.prompt for s in found], loc="lower center", ncol=len(found))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    from .atomic import atomic_file

    try:
        with atomic_file(path, ".png") as tmp:  # a name of its own: never a file or a link already there
            fig.savefig(tmp, dpi=90, format="png")
    finally:
        plt.close(fig)
    return path


def _created_folders(folder: Path) -> List[Path]:
    """``folder`` and its parents that do not exist yet, deepest first (removed again when the demo fails)."""
    missing = []
    probe = Path(folder)
    while not os.path.lexists(probe) and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    return missing


def check_demo_request(output: Path, source: Path, device: str) -> None:
    """Everything the demo can check before it computes: the input is a readable image file or folder, the output
    is a folder (or can be made), none of the files written into it is the input, the device exists. Raises
    ValueError (or a subclass) naming the problem; nothing is created."""
    from .device import resolve_device
    from .engine.writers import check_name_length, input_files, refuse_input_targets

    if not source.exists():
        raise FileNotFoundError(f"input {source} does not exist")
    if os.path.lexists(output) and not output.is_dir():
        raise ValueError(f"--output {output} is a file; the demo writes into a folder: give a folder name")
    targets = [output / name for name in DEMO_FILES]
    for target in targets:
        check_name_length(target)
        if target.is_dir():
            raise ValueError(f"{target} is a folder; the demo writes a file there: choose another --output folder")
    refuse_input_targets(targets, input_files(source))
    resolve_device(device)


def run_demo(
    output: Path,
    model: str = "default",
    device: str = "auto",
    prompts: Optional[Sequence[str]] = None,
    input_path: Optional[Path] = None,
    print_fn: Callable[[str], None] = print,
) -> List:
    """Segment ``prompts`` on the demo volume (or ``input_path``); write labelmap, report and PNG into ``output``."""
    from .app import open_segmenter

    source = Path(input_path) if input_path else demo_volume()
    prompts = list(prompts or DEMO_PROMPTS)
    output = Path(output)
    check_demo_request(output, source, device)
    print_fn(f"input:  {source}")
    print_fn(f"model:  {model} (device {device})")
    segmenter = open_segmenter(model, device=device)  # a catalog id or a folder, resolved once
    result = segmenter.segment(str(source), prompts)
    made = _created_folders(output)
    try:
        output.mkdir(parents=True, exist_ok=True)
        labelmap = result.save(output / DEMO_FILES[0], overwrite=True)
        png = render_overlay(result, f"TextSegment demo: {source.name}", output / DEMO_FILES[2])
    except BaseException:
        for folder in made:  # a refused or failed demo leaves no empty folder behind
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    print_fn("")
    print_fn(f"{'prompt':<22} {'found':<6} {'confidence':>10} {'volume mL':>10}  where (slices)")
    for seg in result.segments:
        where = f"{seg.slices[0]}-{seg.slices[1]}" if seg.found and seg.slices else "-"
        found = "yes" if seg.found else "no"
        print_fn(f"{seg.prompt:<22} {found:<6} {seg.confidence:>10.2f} {seg.volume_ml:>10.2f}  {where}")
    print_fn("")
    print_fn(f"labelmap: {labelmap}")
    print_fn(f"report:   {labelmap}.json")
    print_fn(f"picture:  {png}")
    return result.segments
