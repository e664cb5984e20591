"""Writing results: one writer per labelmap format and the JSON report, each verified before it replaces anything.

- ``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``: one labelmap (label i + 1 = prompt i; overlaps drawn by the ``overlap``
  order of :mod:`.labelmap`);
- ``.seg.nrrd``: a Slicer segmentation; overlapping segments in separate layers, names, colours and terminology
  from each prompt's query, TextSegment's tags;
- ``.dcm``: a binary DICOM Segmentation, one segment per found prompt (:mod:`.dicomseg`, built with highdicom);
- ``<output>.json``: the report, with each segment's own volume and the voxels actually drawn for it.

Every file is written to a temporary file in the destination folder, synced, read back (every header field SimpleITK
reads, every voxel) and only then renamed into place: ITK's writers report no error on a full disk, so a file is
trusted only once it has been read back. On any failure the temporary files are removed and nothing is replaced.
"""

import json
import os
import stat
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import numpy as np
import SimpleITK as sitk

from ..atomic import atomic_file
from ..prompts import safe_text, segment_tags
from .io import LABELMAP_SUFFIXES, suffix_of
from .labelmap import DEFAULT_OVERLAP, assign_layers, check_overlap, compose, label_dtype, paint_order, visible_voxels
from .readcheck import check_image_file


class WriteFailed(OSError):
    """A file could not be written completely (often a full disk); nothing was replaced."""


def _verify_image(expected: sitk.Image, path: Path):
    """A check that the file at ``tmp`` reads back as ``expected`` (geometry and every voxel)."""

    def verify(tmp: str) -> None:
        try:
            check_image_file(tmp)
            back = sitk.ReadImage(tmp)
        except Exception as exc:  # noqa: BLE001 - InputError or ITK's RuntimeError: either way the file is bad
            raise WriteFailed(f"{path} could not be written completely ({exc}); is the disk full?") from exc
        same = (
            back.GetSize() == expected.GetSize()
            and back.GetNumberOfComponentsPerPixel() == expected.GetNumberOfComponentsPerPixel()
            and np.allclose(back.GetSpacing(), expected.GetSpacing(), rtol=1e-5, atol=1e-5)
            and np.allclose(back.GetOrigin(), expected.GetOrigin(), rtol=1e-5, atol=1e-4)
            and np.allclose(back.GetDirection(), expected.GetDirection(), atol=1e-5)
            and np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(expected))
        )
        if not same:
            raise WriteFailed(f"{path} does not read back as written (is the disk full?); nothing was replaced")

    return verify


def _verify_text(text: str, path: Path):
    data = text.encode("utf-8")

    def verify(tmp: str) -> None:
        with open(tmp, "rb") as fh:
            if fh.read() != data:
                raise WriteFailed(f"{path} does not read back as written (is the disk full?); nothing was replaced")

    return verify


def _write_itk(image: sitk.Image, tmp: str, path: Path) -> None:
    try:
        sitk.WriteImage(image, tmp, True)
    except RuntimeError as exc:  # some ITK writers do report a short write (NRRD's gzip), most do not
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[-1] if lines else "unknown error"
        raise WriteFailed(f"{path} could not be written completely ({reason}); is the disk full?") from exc


class WriteRefused(ValueError):
    """A write that would destroy something the user owns (the input itself); nothing was written."""


#: the longest file name (bytes) a writer may need next to an output: ``.<name>.json.<12 hex>.tmp.json``
_TEMP_EXTRA = len(".") + len(".json") + 1 + 12 + len(".tmp") + len(".json")


def check_name_length(path: Path) -> None:
    """Refuse an output whose own name, or the name of a file written next to it (report, lock, temporary file),
    is longer than the folder's file system allows (OSError naming the path; checked before anything is computed)."""
    path = Path(path)
    folder = path.parent
    while not os.path.isdir(folder) and folder.parent != folder:
        folder = folder.parent
    try:
        limit = os.pathconf(str(folder), "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = 255
    for part in path.parts[:-1]:
        if len(os.fsencode(part)) > limit:
            raise OSError(
                f"the folder name {part[:40]}... of {path} is {len(os.fsencode(part))} bytes, more than the "
                f"{limit} this file system allows; choose a shorter name"
            )
    need = len(os.fsencode(path.name)) + _TEMP_EXTRA
    if need > limit:
        raise OSError(
            f"the file name {path.name[:40]}... is too long: with its report and temporary files it needs {need} "
            f"bytes, more than the {limit} this file system allows; choose a name shorter by {need - limit} bytes"
        )


def file_identity(path: Union[str, Path]) -> Optional[Tuple[int, int]]:
    """(device, inode) of ``path`` (links followed): equal for the same file under any name; None when missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def input_files(source: Optional[Path]) -> List[Path]:
    """The files of an input: the file itself, or every file of a DICOM folder."""
    if source is None:
        return []
    source = Path(source)
    if source.is_dir():
        return [p for p in source.iterdir() if p.is_file()]
    return [source]


def refuse_input_targets(targets: Iterable[Path], inputs: Iterable[Path]) -> None:
    """:class:`WriteRefused` when a target is one of ``inputs``: the same resolved path, or the same file by identity
    (a hard link or a symbolic link to an input is the input). An input is never written, whatever ``overwrite``."""
    inputs = list(inputs)
    ids = {i for i in (file_identity(p) for p in inputs) if i is not None}
    paths = {os.path.normcase(os.path.realpath(p)) for p in inputs}
    for target in targets:
        same = file_identity(target) in ids if os.path.exists(target) else False
        if same or os.path.normcase(os.path.realpath(target)) in paths:
            raise WriteRefused(
                f"{target} is the input of this result (the same file); an input is never written, even with "
                "overwrite: choose another output file or folder. Nothing was written"
            )


def _check_target(path: Path, overwrite: bool, what: str = "") -> None:
    if path.is_dir():
        raise IsADirectoryError(
            f"{path} is a folder{what}; give a file name ending in one of {', '.join(LABELMAP_SUFFIXES)} whose "
            "report name (<output>.json) is free too (a folder is never replaced)"
        )
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(f"{path} exists{what}; pass overwrite=True (or --overwrite) to replace it")


def own_report(report_path: Path, output: Path) -> bool:
    """Whether ``report_path`` is a report TextSegment wrote for ``output`` (a regular file, not a link, holding a
    report whose ``output`` is this output): such a file may be replaced when the output is written again; any other
    file at that name is the user's and is never replaced without ``overwrite``."""
    try:
        st = os.lstat(report_path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > 1 << 24:
            return False
        with open(report_path, encoding="utf-8") as fh:
            report = json.load(fh)
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(report, dict) and report.get("output") == str(output) and isinstance(report.get("segments"), list)


def check_targets(path: Union[str, Path], overwrite: bool, inputs: Iterable[Path] = ()) -> None:
    """Everything about an output that can be known before computing: a labelmap suffix, a name the file system
    can hold, neither the output nor its report ``<output>.json`` a folder, neither replacing a file without
    ``overwrite``, neither one of ``inputs``. Raises (ValueError, OSError or their subclasses) naming the path."""
    path = Path(path)
    if suffix_of(path) not in LABELMAP_SUFFIXES:
        raise ValueError(f"unsupported output type {path.name}; use one of {', '.join(LABELMAP_SUFFIXES)}")
    check_name_length(path)
    report_path = Path(str(path) + ".json")
    refuse_input_targets([path, report_path], inputs)
    _check_target(path, overwrite)
    _check_target(report_path, overwrite or own_report(report_path, path), " (the report written next to the output)")


def write_image(image: sitk.Image, path: Union[str, Path], overwrite: bool = False, report: str = "") -> Path:
    """Write ``image`` (any of the labelmap formats) and, when ``report`` is given, ``<path>.json`` with that text.

    The image is committed first (never replacing an existing file without ``overwrite``), then the report; both are
    read back before they are renamed into place.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "labels.nii.gz"
        >>> write_image(sitk.Image(4, 4, 4, sitk.sitkUInt8), out, report="{}").name
        'labels.nii.gz'
    """
    path = Path(path)
    _check_target(path, overwrite)
    suffix = suffix_of(path)
    report_path = Path(str(path) + ".json")
    if report:
        replace = overwrite or own_report(report_path, path)
        _check_target(report_path, replace, " (the report written next to the output)")
        with atomic_file(report_path, ".json", overwrite=replace, verify=_verify_text(report, report_path)) as rtmp:
            Path(rtmp).write_text(report, encoding="utf-8")
            _verify_text(report, report_path)(rtmp)  # before the image is committed (the report's commit follows)
            with atomic_file(path, suffix, overwrite=overwrite, verify=_verify_image(image, path)) as tmp:
                _write_itk(image, tmp, path)
    else:
        with atomic_file(path, suffix, overwrite=overwrite, verify=_verify_image(image, path)) as tmp:
            _write_itk(image, tmp, path)
    return path


def write_text(text: str, path: Union[str, Path]) -> Path:
    """Write a text file atomically (read back before the rename)."""
    path = Path(path)
    with atomic_file(path, overwrite=True, verify=_verify_text(text, path)) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return path


# --- composing the images ----------------------------------------------------------------------------------------
def _input_image(result: Any, stack: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(result.volume.to_input_array(stack))
    image.CopyInformation(result.volume.image)
    return image


def labelmap_image(result: Any, overlap: str = DEFAULT_OVERLAP) -> Tuple[sitk.Image, np.ndarray]:
    """The labelmap of ``result`` in the input geometry and the voxels drawn for each label."""
    masks = [s.mask for s in result.states]
    order = paint_order([int(m.sum()) for m in masks], [s.confidence for s in result.segments], check_overlap(overlap))
    stack = compose(masks, order)
    return _input_image(result, stack), visible_voxels(stack, len(masks))


def _extent(mask: np.ndarray) -> str:
    """``i0 i1 j0 j1 k0 k1`` of a (k, j, i) mask, or Slicer's empty extent."""
    if not mask.any():
        return "0 -1 0 -1 0 -1"
    bounds: List[int] = []
    for axis in (2, 1, 0):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        bounds += [int(hit[0]), int(hit[-1])]
    return " ".join(map(str, bounds))


def seg_nrrd_image(result: Any) -> Tuple[sitk.Image, np.ndarray]:
    """A Slicer ``.seg.nrrd`` image of ``result``: overlapping segments in separate layers (a vector image when
    more than one layer is needed), with names, colours, terminology and tags; every segment fully visible."""
    masks = [s.mask for s in result.states]
    layers = assign_layers(masks)
    dtype = label_dtype(len(masks))
    stacks = []
    for layer in range(max(layers, default=0) + 1):
        members = [i for i, n in enumerate(layers) if n == layer]
        stack = np.zeros(masks[0].shape, dtype) if masks else np.zeros((0, 0, 0), dtype)
        for i in members:
            stack[masks[i]] = i + 1
        stacks.append(result.volume.to_input_array(stack))
    if len(stacks) == 1:
        image = sitk.GetImageFromArray(stacks[0])
    else:
        image = sitk.GetImageFromArray(np.stack(stacks, axis=-1), isVector=True)
    image.CopyInformation(result.volume.image)
    image.SetMetaData("Segmentation_MasterRepresentation", "Binary labelmap")
    image.SetMetaData("Segmentation_ContainedRepresentationNames", "Binary labelmap|")
    image.SetMetaData("Segmentation_ReferenceImageExtentOffset", "0 0 0")
    for i, report in enumerate(result.segments):
        query = result.states[i].query  # the prompt as it was read once: no matching here
        name = safe_text(report.prompt)
        tags = segment_tags(query, report.found, report.confidence, report.volume_ml)
        color = query.color
        image.SetMetaData(f"Segment{i}_ID", f"Segment_{report.label}")
        image.SetMetaData(f"Segment{i}_Name", name)
        image.SetMetaData(f"Segment{i}_NameAutoGenerated", "0")
        image.SetMetaData(f"Segment{i}_Color", " ".join(f"{c:.6g}" for c in color))
        image.SetMetaData(f"Segment{i}_ColorAutoGenerated", "0")
        image.SetMetaData(f"Segment{i}_LabelValue", str(report.label))
        image.SetMetaData(f"Segment{i}_Layer", str(layers[i]))
        image.SetMetaData(f"Segment{i}_Extent", _extent(result.mask(i)))
        image.SetMetaData(
            f"Segment{i}_Tags", "".join(f"{k}:{safe_text(v).replace('|', ' ')}|" for k, v in tags.items())
        )
    return image, np.array([int(m.sum()) for m in masks], dtype=np.int64)


# --- the report ---------------------------------------------------------------------------------------------------
def report_dict(result: Any, path: Path, visible: np.ndarray, overlap: str) -> Dict:
    """The JSON report of a written result: per segment its own volume and the voxels drawn for it, with a warning
    for every segment that is partly or fully hidden under others."""
    report = dict(result.to_dict(), output=str(path), saved=time.strftime("%Y-%m-%dT%H:%M:%S"), overlap=overlap)
    voxel_ml = result.volume.voxel_ml
    hidden: List[str] = []
    for i, entry in enumerate(report["segments"]):
        own = int(result.states[i].mask.sum())
        shown = int(visible[i]) if i < len(visible) else own
        entry.update(voxels=own, visible_voxels=shown, visible_ml=round(shown * voxel_ml, 3))
        if own and shown < own:
            over = [s.prompt for j, s in enumerate(result.states) if j != i and (s.mask & result.states[i].mask).any()]
            how = "fully" if shown == 0 else "partly"
            text = (
                f"'{entry['prompt']}' ({entry['volume_ml']} mL) is {how} hidden in this labelmap: {shown} of {own} "
                f"voxels carry label {entry['label']}, the rest lie under {', '.join(repr(p) for p in over)}. Write a "
                ".seg.nrrd (keeps overlapping segments) or choose another overlap order"
            )
            entry["warnings"] = list(entry.get("warnings") or []) + [text]
            hidden.append(text)
    report["warnings"] = list(result.info.get("input_warnings") or []) + hidden
    return report


def report_text(report: Dict) -> str:
    """The report as strict JSON (a NaN or infinite number is refused, never written)."""
    try:
        return json.dumps(report, indent=2, allow_nan=False) + "\n"
    except ValueError as exc:
        raise ValueError(f"the report holds a NaN or infinite number ({exc}); nothing was written") from exc


def save_result(
    result: Any, path: Union[str, Path], overwrite: bool = False, overlap: str = DEFAULT_OVERLAP
) -> Dict[str, Any]:
    """Write ``result`` as the labelmap format of ``path``'s suffix, and ``<path>.json``; returns the report written.

    Raises ``FileExistsError`` if ``path`` or its report exists and not ``overwrite``; :class:`WriteRefused` when
    ``path`` or its report is the result's input file (whatever ``overwrite``); :class:`WriteFailed` when a file does
    not read back as written (nothing is replaced then).
    """
    path = Path(path)
    suffix = suffix_of(path)
    check_targets(path, overwrite, input_files(getattr(result.volume, "source_path", None)))
    if suffix == ".dcm":  # a DICOM Segmentation (see .dicomseg): every segment whole, one per found prompt
        from .dicomseg import save_dicom_seg

        return save_dicom_seg(
            result,
            path,
            overwrite,
            lambda visible, dicom: dict(report_dict(result, path, visible, "segments"), dicom=dicom),
        )
    if suffix == ".seg.nrrd":
        image, visible = seg_nrrd_image(result)
        layout = "layers"
    else:
        image, visible = labelmap_image(result, overlap)
        layout = overlap
    report = report_dict(result, path, visible, layout)
    write_image(image, path, overwrite=overwrite, report=report_text(report))
    return report


def write_result(result: Any, path: Union[str, Path], overwrite: bool = False, overlap: str = DEFAULT_OVERLAP) -> Path:
    """:func:`save_result`, returning ``path`` (what ``Result.save`` returns)."""
    save_result(result, path, overwrite, overlap)
    return Path(path)
