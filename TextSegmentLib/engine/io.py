"""Reading and checking inputs: files, SimpleITK images, arrays with geometry, and refinement prompts.

Inputs are a file path (NIfTI, NRRD, MHA/MHD, a DICOM series folder or a single DICOM file), a SimpleITK image, or a
:class:`VolumeInput` (numpy array in SimpleITK ``(k, j, i)`` order + spacing, origin, direction) as the Slicer bridge
passes it. Every input becomes a 3D scalar SimpleITK image after :func:`check_image`; anything else raises
:class:`InputError` with a message that says what to do. Files are checked to hold every voxel their header promises
before they are read (:mod:`.readcheck`). Inputs are never modified.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk

from ..prompts import Query, clean_prompt
from .errors import InputError
from .readcheck import check_image_file

#: metadata key of the warnings about how an input was read (they go into the report)
INPUT_WARNINGS = "TextSegment_input_warnings"
#: the largest voxel magnitude accepted (CT in HU, MR and PET values are far below; 1e300 would overflow)
MAX_VALUE = 1e20
#: the output formats of a labelmap (one writer each, engine/writers.py)
#: the output formats (".dcm": a DICOM Segmentation object, see engine/dicomseg.py)
LABELMAP_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".mha", ".dcm")
#: the image files a folder of scans is searched for (DICOM series are folders)
READABLE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
IMAGE_SUFFIXES = READABLE_SUFFIXES + (".dcm",)

__all__ = ["IMAGE_SUFFIXES", "LABELMAP_SUFFIXES", "READABLE_SUFFIXES", "InputError", "VolumeInput"]


def _numbers(value: Any, count: int, what: str, name: str) -> np.ndarray:
    try:
        out = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{name}: {what} {value!r} is not {count} numbers") from None
    if out.size != count:
        raise InputError(f"{name}: {what} must be {count} numbers, got {out.size}")
    if not np.isfinite(out).all():
        raise InputError(
            f"{name}: {what} {tuple(out.tolist())} holds NaN or infinite values; fix the volume's geometry"
        )
    return out


def check_geometry(spacing: Any, origin: Any, direction: Any, name: str = "volume") -> None:
    """Refuse spacing that is not 3 finite positive numbers, a non-finite origin, or a direction that is not a
    finite orthonormal 3x3 matrix (InputError naming the field).

    Example:
        >>> check_geometry((1, 1, 2), (0, 0, 0), np.eye(3).ravel())
        >>> try:
        ...     check_geometry((1, 0, 2), (0, 0, 0), np.eye(3).ravel())
        ... except InputError as exc:
        ...     print("spacing" in str(exc) and "positive" in str(exc))
        True
    """
    sp = _numbers(spacing, 3, "spacing", name)
    if (sp <= 0).any():
        raise InputError(f"{name}: spacing {tuple(sp.tolist())} must be positive (mm per voxel); fix the geometry")
    _numbers(origin, 3, "origin", name)
    d = _numbers(direction, 9, "direction", name).reshape(3, 3)
    if np.abs(d.T @ d - np.eye(3)).max() > 1e-3:
        raise InputError(
            f"{name}: direction {tuple(np.round(d.ravel(), 4).tolist())} is not orthonormal (its columns must be unit "
            "vectors at right angles: the axes of the voxel grid in LPS); fix the geometry"
        )


@dataclass
class VolumeInput:
    """A volume as arrays: ``array`` in SimpleITK ``(k, j, i)`` order, geometry in LPS (ITK convention).

    The geometry is checked when the object is made (:func:`check_geometry`).

    Example:
        >>> v = VolumeInput(np.zeros((4, 5, 6), np.int16), (1.0, 1.0, 2.0), (0, 0, 0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
        >>> to_image(v).GetSize()
        (6, 5, 4)
    """

    array: np.ndarray
    spacing: Sequence[float]
    origin: Sequence[float]
    direction: Sequence[float]
    metadata: Optional[Dict[str, str]] = field(default=None)

    def __post_init__(self) -> None:
        check_geometry(self.spacing, self.origin, self.direction, "VolumeInput")


InputLike = Union[str, Path, sitk.Image, VolumeInput, Any]


def suffix_of(path: Union[str, Path]) -> str:
    """Lower-case known (double) suffix of a path, e.g. ``.nii.gz`` or ``.seg.nrrd``; '' if none."""
    name = str(path).lower()
    for suffix in LABELMAP_SUFFIXES + IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return Path(name).suffix


def _dicom_numbers(reader: sitk.ImageFileReader, tag: str, count: int) -> Optional[np.ndarray]:
    if not reader.HasMetaDataKey(tag):
        return None
    try:
        values = np.array([float(v) for v in reader.GetMetaData(tag).replace(" ", "").split("\\") if v], float)
    except ValueError:
        return None
    return values if values.size == count and np.isfinite(values).all() else None


def check_dicom_slices(folder: Path, files: Sequence[str]) -> None:
    """Refuse a DICOM series that cannot be one regular grid: slices of different orientations under one series UID,
    or a gap where slices are missing (SimpleITK would read it with an averaged spacing: the anatomy would be squeezed
    and volumes wrong). InputError naming the folder and the slices."""
    if len(files) < 3:
        return
    orientations, positions = [], []
    for name in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(name)
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            return  # SimpleITK's reader gives its own message
        orientation = _dicom_numbers(reader, "0020|0037", 6)
        position = _dicom_numbers(reader, "0020|0032", 3)
        if orientation is None or position is None:
            return  # not the tags of a cross-sectional series: nothing to check
        orientations.append(orientation)
        positions.append(position)
    first = orientations[0]
    odd = [Path(f).name for f, o in zip(files, orientations) if np.abs(o - first).max() > 1e-3]
    if odd:
        raise InputError(
            f"{folder} holds slices of different orientations under one series ({len(odd)} of {len(files)}, e.g. "
            f"{odd[0]}): they are not one volume. Put each orientation (each acquisition) in its own folder"
        )
    normal = np.cross(first[:3], first[3:])
    depth = np.sort(np.asarray(positions) @ normal)
    steps = np.diff(depth)
    step = float(np.median(steps))
    if step <= 1e-6:
        raise InputError(f"{folder} holds several slices at the same position; it is not one volume")
    gaps = np.flatnonzero(np.abs(steps - step) > max(0.1 * step, 0.01))
    if gaps.size:
        where = ", ".join(f"{depth[g]:.2f}..{depth[g + 1]:.2f} mm" for g in gaps[:3])
        raise InputError(
            f"{folder} is not evenly spaced: the slices are {step:.3g} mm apart but {gaps.size} gap(s) differ "
            f"({where}); a slice is missing or the series mixes acquisitions. Export the complete series again"
        )


def _read_dicom_folder(folder: Path) -> Tuple[sitk.Image, Dict[str, str]]:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"{folder} is a folder without a DICOM series; give an image file or a DICOM series folder")
    if len(series) > 1:
        raise InputError(f"{folder} holds {len(series)} DICOM series; put each series in its own folder")
    files = reader.GetGDCMSeriesFileNames(str(folder), series[0])
    check_dicom_slices(folder, files)
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    reader.LoadPrivateTagsOff()
    image = reader.Execute()
    meta = {k: reader.GetMetaData(0, k) for k in reader.GetMetaDataKeys(0)}
    return image, meta


def read_path(path: Union[str, Path]) -> Tuple[sitk.Image, Dict[str, str]]:
    """Read an image file or DICOM series folder; returns the image and its metadata. Raises InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input {path} does not exist")
    if path.is_dir():
        return _read_dicom_folder(path)
    check_image_file(path)  # a regular file holding all its voxels (a truncated NIfTI would read as zeros)
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        image = reader.Execute()
        meta = {k: reader.GetMetaData(k) for k in reader.GetMetaDataKeys()}
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        raise InputError(
            f"cannot read {path} as an image ({first[:160]}); give a NIfTI, NRRD, MHA file or a DICOM series folder"
        ) from exc
    return image, meta


def follow_sform(image: sitk.Image, path: Path) -> Optional[str]:
    """When a NIfTI file's qform and sform disagree, give ``image`` the sform's geometry (what FSL, nibabel, ANTs and
    FreeSurfer show; SimpleITK may have taken the qform) and return a warning for the report; None when they agree.
    The labelmap written for it then carries that one geometry in both its qform and its sform."""
    from .readcheck import nifti_sform

    found = nifti_sform(path)
    if found is None or found[2] <= 0.01:
        return None
    sform, _, apart = found
    matrix = sform[:3, :3]
    spacing = np.linalg.norm(matrix, axis=0)
    if not np.isfinite(sform).all() or (spacing <= 0).any():
        raise InputError(f"{path} has a damaged sform; the file cannot be read safely. Export it again")
    image.SetSpacing([float(v) for v in spacing])
    image.SetOrigin([float(v) for v in sform[:3, 3]])
    image.SetDirection([float(v) for v in (matrix / spacing).ravel()])
    return (
        f"{path.name}: its qform and sform disagree (by up to {apart:.3g} mm); the sform was followed, as FSL, nibabel "
        "and ANTs do (other tools may show the scan elsewhere). The labelmap's qform and sform both carry the sform"
    )


def to_image(volume: Any) -> sitk.Image:
    """A :class:`VolumeInput`-like object (array, spacing, origin, direction) -> SimpleITK image."""
    array = np.asarray(volume.array)
    if array.ndim != 3:
        raise InputError(f"the volume array has {array.ndim} dimensions {array.shape}; a 3D (k, j, i) array is needed")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    check_geometry(volume.spacing, volume.origin, volume.direction, type(volume).__name__)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=False)
    image.SetSpacing([float(s) for s in volume.spacing])
    image.SetOrigin([float(s) for s in volume.origin])
    image.SetDirection([float(s) for s in np.asarray(volume.direction, float).reshape(-1)])
    return image


def load_input(source: InputLike) -> Tuple[sitk.Image, Dict[str, str], str]:
    """Any supported input -> (checked 3D scalar image, metadata, a name for messages). Raises InputError.

    Example:
        >>> img = sitk.GetImageFromArray(np.random.rand(3, 8, 8).astype(np.float32))
        >>> load_input(img)[0].GetDimension()
        3
    """
    if isinstance(source, (str, Path)):
        image, meta = read_path(source)
        name = str(source)
        if str(source).lower().endswith((".nii", ".nii.gz")) and image.GetDimension() == 3:
            warning = follow_sform(image, Path(source))
            if warning:
                meta[INPUT_WARNINGS] = warning
    elif isinstance(source, sitk.Image):
        image, meta, name = source, {k: source.GetMetaData(k) for k in source.GetMetaDataKeys()}, "image"
    elif hasattr(source, "array") and hasattr(source, "spacing"):
        image, meta, name = to_image(source), dict(getattr(source, "metadata", None) or {}), "volume"
    else:
        raise InputError(
            f"unsupported input of type {type(source).__name__}; give a file path, a SimpleITK image or a VolumeInput"
        )
    check_image(image, name)
    return image, meta, name


def check_image(image: sitk.Image, name: str = "input") -> None:
    """Refuse images the engine cannot segment: not 3D, vector/RGB, empty, constant, NaN/inf, singular geometry."""
    dim = image.GetDimension()
    size = image.GetSize()
    if image.GetNumberOfComponentsPerPixel() > 1:
        raise InputError(
            f"{name} has {image.GetNumberOfComponentsPerPixel()} components per voxel (RGB or vector image); "
            "convert it to a scalar grey-level volume first"
        )
    if dim == 4:
        raise InputError(
            f"{name} is a 4D image {size} (time series or multi-channel); extract one 3D volume first, "
            "for example with SimpleITK's Extract or Slicer's sequence browser"
        )
    if dim == 2 or (dim == 3 and sorted(size)[0] < 2):
        raise InputError(
            f"{name} is a 2D image {size}; TextSegment segments 3D volumes (at least 2 slices along every axis)"
        )
    if dim != 3:
        raise InputError(f"{name} has {dim} dimensions; a 3D volume is needed")
    if image.GetPixelID() in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
        raise InputError(f"{name} has complex voxels; give magnitude images")
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    geometry = np.concatenate([direction.ravel(), image.GetSpacing(), image.GetOrigin()])
    if not np.isfinite(geometry).all() or abs(np.linalg.det(direction)) < 1e-3 or min(image.GetSpacing()) <= 0:
        raise InputError(f"{name} has a degenerate geometry (spacing {image.GetSpacing()}); fix its header")
    array = sitk.GetArrayViewFromImage(image)
    if array.size == 0:
        raise InputError(f"{name} is empty")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise InputError(f"{name} has {bad} NaN or infinite voxels; replace them (for example with the minimum) first")
    low, high = float(array.min()), float(array.max())
    if max(abs(low), abs(high)) > MAX_VALUE:
        raise InputError(
            f"{name} has voxel values from {low:.3g} to {high:.3g}, beyond any scanner's range (|value| <= "
            f"{MAX_VALUE:.0e}): computing with them would overflow. Rescale the image (or fix its scaling) first"
        )
    if float(array.min()) == float(array.max()):
        raise InputError(f"{name} is constant (every voxel {float(array.min())}); there is nothing to segment")


# --- refinement prompts --------------------------------------------------------------------------------------------
def check_prompts(prompts: Union[str, Query, Sequence[Union[str, Query]]]) -> List[Union[str, Query]]:
    """Validate prompts: a string or a non-empty list of non-empty strings (a parsed :class:`Query` passes as it is).
    Raises InputError."""
    if isinstance(prompts, (str, Query)):
        prompts = [prompts]
    if prompts is not None and not isinstance(prompts, (list, tuple)):
        raise InputError(f"prompts must be a text or a list of texts, got {type(prompts).__name__} {prompts!r:.60}")
    prompts = list(prompts or [])
    if not prompts:
        raise InputError("no prompt given; give at least one text prompt such as 'liver'")
    out = []
    for p in prompts:
        if isinstance(p, Query):
            out.append(p)
            continue
        if not isinstance(p, str):
            raise InputError(f"prompt {p!r:.60} is a {type(p).__name__}, not a text; every prompt must be a text")
        if not p.strip():
            raise InputError(f"prompt {p!r} is empty; every prompt must name what to segment")
        try:
            out.append(clean_prompt(p))
        except ValueError as exc:
            raise InputError(str(exc)) from exc
    return out


def _coords(value: Any, what: str, sizes: Tuple[int, ...] = (2, 3)) -> List[float]:
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        raise InputError(f"{what} {value!r} is not a pair or triple of numbers") from None
    if len(out) not in sizes:
        raise InputError(f"{what} {value!r} must have {' or '.join(map(str, sizes))} numbers")
    if not all(math.isfinite(v) for v in out):
        raise InputError(f"{what} {value!r} holds NaN or infinite values")
    return out


def _in_plane_bounds(
    volume: Any, coords: str, plane: Optional[str] = None
) -> Tuple[List[int], List[Tuple[float, float]], int]:
    """(in-plane axes, their (low, high) bounds, the normal axis) of ``plane`` (default the volume's primary plane)
    in input voxel or LPS physical coordinates."""
    from .volume import AXIS_NORMAL

    plane = plane or volume.axis
    size = volume.image.GetSize()
    if coords == "voxel":
        normal = volume.reorientation.permutation[AXIS_NORMAL[plane]]
        bounds = [(-0.5, n - 0.5) for n in size]
    else:
        normal = AXIS_NORMAL[plane]
        corners = np.array(
            [
                volume.image.TransformContinuousIndexToPhysicalPoint([c * n - 0.5 for c, n in zip(corner, size)])
                for corner in np.ndindex(2, 2, 2)
            ]
        )
        bounds = list(zip(corners.min(axis=0).tolist(), corners.max(axis=0).tolist()))
    axes = [a for a in range(3) if a != normal]
    return axes, [bounds[a] for a in axes], normal


def _to_plane(point: List[float], axes: List[int]) -> List[float]:
    """A pair is already in-plane; of a triple (voxel index or LPS point) keep the two in-plane axes."""
    return point if len(point) == 2 else [point[a] for a in axes]


def check_refine_prompts(
    result: Any,
    prompt_index: Any,
    slice_index: Any,
    box: Optional[Sequence[Any]] = None,
    points: Optional[Sequence[Any]] = None,
    labels: Optional[Sequence[Any]] = None,
    coords: str = "voxel",
    plane: Optional[str] = None,
) -> None:
    """Refuse refinement prompts on a slice of ``plane`` (default the primary plane) that cannot mean anything,
    with an InputError that says what to fix: a prompt index that is not one of the result's prompts, NaN or
    infinite coordinates, an inverted voxel box ``(a0, b0, a1, b1)`` (a0 > a1), a box or a point entirely off the
    image, a slice outside the volume, labels that are not one 1/0 per point. (Boxes as two corner points, and
    physical boxes, whose LPS axes may run against the index axes, may give their corners in any order.)

    Example:
        >>> check_refine_prompts(result, 0, 5, box=(10, 10, 20, 20))  # doctest: +SKIP
    """
    n = len(result.states)
    if isinstance(prompt_index, bool) or not isinstance(prompt_index, (int, np.integer)) or not 0 <= prompt_index < n:
        raise InputError(
            f"prompt_index {prompt_index!r} is not a prompt of this result: give 0..{n - 1} (the result has {n})"
        )
    if coords not in ("voxel", "physical"):
        raise InputError(f"coords must be 'voxel' or 'physical', got {coords!r}")
    if box is None and not points:
        raise InputError("refine needs a box or at least one point")
    volume = result.volume
    axes, bounds, normal = _in_plane_bounds(volume, "voxel", plane)
    if isinstance(slice_index, (int, np.integer)) and not isinstance(slice_index, bool):
        count = volume.image.GetSize()[normal]
        if not 0 <= int(slice_index) < count:
            raise InputError(f"slice_index {slice_index} is outside 0..{count - 1}")
    else:
        point = _coords(slice_index, "slice_index", (3,))
        index = volume.physical_to_index(point) if coords == "physical" else point
        count = volume.image.GetSize()[normal]
        if not -0.5 <= index[normal] <= count - 0.5:
            raise InputError(f"slice_index {tuple(slice_index)} lies outside the volume")
    axes, bounds, _ = _in_plane_bounds(volume, coords, plane)
    where = "voxels (i, j, k)" if coords == "voxel" else "LPS mm"
    if box is not None:
        if len(box) == 4 and not any(isinstance(v, (list, tuple, np.ndarray)) for v in box):
            a0, b0, a1, b1 = _coords(box, "box", (4,))
            if coords == "voxel" and (a0 > a1 or b0 > b1):  # LPS axes may run against the index axes: not there
                raise InputError(f"box {tuple(box)} is inverted: give (a0, b0, a1, b1) with a0 <= a1 and b0 <= b1")
            corners = [[a0, b0], [a1, b1]]
        elif len(box) == 2:
            corners = [_to_plane(_coords(c, "box corner"), axes) for c in box]
        else:
            raise InputError(f"box {box!r} must be (a0, b0, a1, b1) or two corner points")
        for k, (low, high) in enumerate(bounds):
            lo, hi = min(c[k] for c in corners), max(c[k] for c in corners)
            if hi < low or lo > high:
                raise InputError(
                    f"box {tuple(map(tuple, corners))} lies entirely off the image (in {where}, the image spans "
                    f"{low:g}..{high:g} along that axis); draw it on the image"
                )
    for p in points or []:
        q = _to_plane(_coords(p, "point"), axes)
        if any(not low <= v <= high for v, (low, high) in zip(q, bounds)):
            raise InputError(f"point {tuple(p)} lies off the image (in {where}); place points on the image")
    if labels is not None:
        values = list(labels)
        if len(values) != len(points or []) or any(v not in (0, 1) for v in values):
            raise InputError("labels must give one 1 (inside) or 0 (outside) per point")
