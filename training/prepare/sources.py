"""Readers for training volumes: any SimpleITK image, label maps resampled onto an image grid, InVesalius projects.

Everything returned is in the canonical LPS array order of :mod:`TextSegmentLib.imaging` (``a[k]`` is an axial
slice, rows anterior->posterior, columns patient right->left) together with the canonical spacing (L, P, S) in mm.
"""

import plistlib
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import SimpleITK as sitk

from TextSegmentLib.engine.io import read_path
from TextSegmentLib.imaging import reorientation_for, to_canonical


@dataclass
class CanonicalVolume:
    """A volume in canonical LPS array order with its spacing (L, P, S) and the original SimpleITK image."""

    array: np.ndarray
    spacing: Tuple[float, float, float]
    image: sitk.Image
    oblique_degrees: float = 0.0


def canonical(image: sitk.Image) -> CanonicalVolume:
    """Reorient a SimpleITK image to canonical LPS (nearest axis, no resampling)."""
    reo = reorientation_for(image.GetDirection())
    array = np.ascontiguousarray(to_canonical(sitk.GetArrayFromImage(image), reo))
    return CanonicalVolume(array, reo.canonical_spacing(image.GetSpacing()), image, reo.oblique_degrees)


def read_image(path: str) -> sitk.Image:
    """Read a 3D image (NIfTI, NRRD, MHA, a DICOM folder, or an InVesalius ``.inv3`` project)."""
    if str(path).startswith("nilearn:"):
        return read_nilearn(str(path)[len("nilearn:") :])
    p = Path(path)
    if p.suffix == ".inv3":
        return read_invesalius(p)[0]
    image, _ = read_path(p)  # the engine's reader: files checked for truncation, DICOM series folders
    if image.GetDimension() == 4:  # e.g. MSD multi-modal: take the first channel
        size = list(image.GetSize())
        image = sitk.Extract(image, size[:3] + [0], [0, 0, 0, 0])
    return image


def read_nilearn(name: str) -> sitk.Image:
    """A volume shipped with nilearn, e.g. ``mni152_template``, ``mni152_brain_mask``, ``mni152_gm_mask`` (1 mm)."""
    import tempfile

    import nibabel as nib
    from nilearn import datasets

    img = getattr(datasets, f"load_{name}")(resolution=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine), str(path))
        return sitk.ReadImage(str(path))


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-3) -> bool:
    """True when two images share size, spacing, origin and direction."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol)
    )


def labels_on_grid(labels: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """A label map on ``reference``'s grid: unchanged when the grids match, else resampled (nearest neighbour)."""
    if same_grid(labels, reference):
        return labels
    return sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, labels.GetPixelID())


def read_invesalius(path: Path) -> Tuple[sitk.Image, dict]:
    """Read an InVesalius ``.inv3`` project: the CT (int16) and its masks {index: uint8 image on the same grid}.

    The project stores axial slices (k, j, i) with spacing (x, y, z) and no direction; rows run posterior->anterior
    (checked on the example: the head rest is at row 0), so rows are flipped to give LPS. Left/right cannot be
    checked from the file; no left/right labels are derived from it.
    """
    masks = {}
    with tarfile.open(path, "r:gz") as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        main = plistlib.loads(tar.extractfile(members["main.plist"]).read())
        info = main["matrix"]
        shape = tuple(info["shape"])
        raw = tar.extractfile(members[Path(info["filename"]).name]).read()
        volume = np.frombuffer(raw, dtype=np.dtype(info["dtype"])).reshape(shape)[:, ::-1]
        image = sitk.GetImageFromArray(np.ascontiguousarray(volume))
        image.SetSpacing([float(s) for s in main["spacing"]])
        for key, plist_name in main.get("masks", {}).items():
            meta = plistlib.loads(tar.extractfile(members[plist_name]).read())
            mshape = tuple(meta["mask_shape"])
            data = np.frombuffer(tar.extractfile(members[meta["mask_file"]]).read(), dtype=np.uint8).reshape(mshape)
            data = data[1:, 1:, 1:][:, ::-1]  # InVesalius keeps a one-voxel pad before each axis
            mask = sitk.GetImageFromArray(np.ascontiguousarray(data > 127).astype(np.uint8))
            mask.CopyInformation(image)
            masks[int(key)] = mask
    return image, masks


def read_layer(spec: dict, reference: sitk.Image) -> np.ndarray:
    """Read one label layer described by a config entry and return it in canonical order on the image grid.

    ``spec`` keys: ``path`` (label map or image), optional ``threshold`` (binary mask of values > threshold),
    ``fill_holes`` (slice-wise hole filling of a binary mask), ``invesalius_mask`` (mask index in an ``.inv3``).
    """
    if "invesalius_mask" in spec:
        labels = read_invesalius(Path(spec["path"]))[1][int(spec["invesalius_mask"])]
    else:
        labels = read_image(spec["path"])
    labels = labels_on_grid(labels, reference)
    array = canonical(labels).array
    threshold: Optional[float] = spec.get("threshold")
    if threshold is not None:
        array = (array > threshold).astype(np.uint8)
        if spec.get("fill_holes"):
            from scipy import ndimage

            array = ndimage.binary_fill_holes(array).astype(np.uint8)
            array = np.stack([ndimage.binary_fill_holes(s) for s in array]).astype(np.uint8)
    if array.max() > 65535 or array.min() < 0:
        raise ValueError(f"label layer {spec['path']} has values outside 0..65535")
    return array.astype(np.uint16 if array.max() > 255 else np.uint8)
