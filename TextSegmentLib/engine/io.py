"""Reading and checking inputs, writing labelmaps atomically.

Inputs are a file path (NIfTI, NRRD, MHA/MHD, a DICOM series folder or a single DICOM file), a SimpleITK image, or a
:class:`VolumeInput` (numpy array in SimpleITK ``(k, j, i)`` order + spacing, origin, direction) as the Slicer bridge
passes it. Every input becomes a 3D scalar SimpleITK image after :func:`check_image`; anything else raises
:class:`InputError` with a message that says what to do. Inputs are never modified.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk

from ..atomic import atomic_file

LABELMAP_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".mha")
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".dcm")


class InputError(ValueError):
    """An input image or prompt cannot be used; the message names the problem and what to do."""


@dataclass
class VolumeInput:
    """A volume as arrays: ``array`` in SimpleITK ``(k, j, i)`` order, geometry in LPS (ITK convention).

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


InputLike = Union[str, Path, sitk.Image, VolumeInput, Any]


def suffix_of(path: Union[str, Path]) -> str:
    """Lower-case known (double) suffix of a path, e.g. ``.nii.gz`` or ``.seg.nrrd``; '' if none."""
    name = str(path).lower()
    for suffix in LABELMAP_SUFFIXES + IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return Path(name).suffix


def _read_dicom_folder(folder: Path) -> Tuple[sitk.Image, Dict[str, str]]:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"{folder} is a folder without a DICOM series; give an image file or a DICOM series folder")
    if len(series) > 1:
        raise InputError(f"{folder} holds {len(series)} DICOM series; put each series in its own folder")
    files = reader.GetGDCMSeriesFileNames(str(folder), series[0])
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


def to_image(volume: Any) -> sitk.Image:
    """A :class:`VolumeInput`-like object (array, spacing, origin, direction) -> SimpleITK image."""
    array = np.asarray(volume.array)
    if array.ndim != 3:
        raise InputError(f"the volume array has {array.ndim} dimensions {array.shape}; a 3D (k, j, i) array is needed")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
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
    if abs(np.linalg.det(direction)) < 1e-3 or min(image.GetSpacing()) <= 0:
        raise InputError(f"{name} has a degenerate geometry (spacing {image.GetSpacing()}); fix its header")
    array = sitk.GetArrayViewFromImage(image)
    if array.size == 0:
        raise InputError(f"{name} is empty")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise InputError(f"{name} has {bad} NaN or infinite voxels; replace them (for example with the minimum) first")
    if float(array.min()) == float(array.max()):
        raise InputError(f"{name} is constant (every voxel {float(array.min())}); there is nothing to segment")


def write_image_atomic(image: sitk.Image, path: Union[str, Path], overwrite: bool = False) -> Path:
    """Write ``image`` to a temporary file next to ``path`` and rename it into place (never half-written).

    An existing ``path`` is replaced only when ``overwrite``; otherwise ``FileExistsError``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (or --overwrite) to replace it")
    suffix = suffix_of(path)
    with atomic_file(path, ".nrrd" if suffix == ".seg.nrrd" else suffix) as tmp:
        sitk.WriteImage(image, tmp, True)
    return path


def write_text_atomic(text: str, path: Union[str, Path]) -> Path:
    """Write text to ``path`` through a temporary file and rename."""
    path = Path(path)
    with atomic_file(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return path
