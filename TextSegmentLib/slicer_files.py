"""Files for batch segmentation: which inputs a folder holds, output names, Slicer labels in .seg.nrrd outputs.

Example:
    >>> output_stem(Path("/data/case01.nii.gz"))
    'case01'
"""

from pathlib import Path
from typing import Any, List, Sequence, Union

from .terminology import match_prompt

INPUT_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: segment tags written by TextSegment (kept in .seg.nrrd files)
TAG_PROMPT, TAG_FOUND, TAG_CONFIDENCE, TAG_VOLUME = (
    "TextSegment.Prompt",
    "TextSegment.Found",
    "TextSegment.Confidence",
    "TextSegment.VolumeMl",
)


def label_seg_nrrd(path: Path, result: Any) -> None:
    """Give a .seg.nrrd written by the engine Slicer's terminology, colours and the TextSegment tags per segment."""
    import SimpleITK as sitk  # noqa: PLC0415

    image = sitk.ReadImage(str(path))
    for i, report in enumerate(result.segments):
        match = match_prompt(report.prompt)
        tags = {
            TAG_PROMPT: report.prompt,
            TAG_FOUND: "true" if report.found else "false",
            TAG_CONFIDENCE: f"{report.confidence:.3f}",
            TAG_VOLUME: f"{report.volume_ml:.3f}",
        }
        if match.entry:
            tags = {"TerminologyEntry": match.entry, **tags}
        image.SetMetaData(f"Segment{i}_Color", " ".join(f"{c:.6g}" for c in match.color))
        image.SetMetaData(f"Segment{i}_Tags", "".join(f"{k}:{str(v).replace('|', ' ')}|" for k, v in tags.items()))
    temporary = path.with_name(f".{path.name}.tmp.seg.nrrd")
    sitk.WriteImage(image, str(temporary), True)
    temporary.replace(path)


def output_stem(path: Path) -> str:
    name = path.name
    for suffix in INPUT_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def input_files(inputs: Union[str, Path, Sequence[Union[str, Path]]]) -> List[Path]:
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    files: List[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(INPUT_SUFFIXES))
            files.extend(images or [path])  # a folder without image files is taken as one DICOM series
        else:
            files.append(path)
    return files
