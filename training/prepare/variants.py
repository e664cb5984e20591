"""A bank of 3D variants of the labelled source volumes: new head sizes, tilts, deformations, fields of view and
slice thicknesses, made in 3D before any slicing (methods_round2.md, section 5).

Every variant is resampled once, from the source, onto a fresh isotropic grid in canonical LPS order
(``a[k]`` is an axial slice): the real image (MR: normalised to [0, 255] by the engine's own percentile function;
CT: Hounsfield units, windowed per prompt when sampled), every label layer and, for MR sources, the full-head
generation class map used for label-to-image synthesis. Per plane it also stores the pixel count of every structure
on every slice, at model resolution, so the sampler finds positives and negatives without reading the volumes.

Layout: ``<bank>/<variant id>/{image,layer_<name>,gen}.npy``, ``counts_<plane>.npy``, ``variant.json``;
``<bank>/bank.json`` lists the structures (written first) and, when the bank is complete, the variants. Variant
folders appear atomically, so training can start while the bank still grows (the sampler rescans the folder).
"""

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from TextSegmentLib.engine.volume import SLICE_AXES, slice_pixel_spacing, slice_view
from TextSegmentLib.imaging import normalize_mr, plan_fit

from ..vocabulary import Structure
from . import headmodel
from .cache import structure_mask
from .sources import labels_on_grid, read_image, read_layer

log = logging.getLogger(__name__)
BANK = "bank.json"

#: spatial and acquisition ranges (defaults; a config's ``bank.spatial`` overrides them)
SPATIAL = {
    "scale": [0.8, 1.2],  # global head size
    "axis_scale": 0.05,  # extra per-axis scale +-
    "rotate_deg": 20.0,  # about every axis
    "shear": 0.02,
    "warp_mm": 3.0,  # smooth non-linear displacement (max std, mm) on a 5^3 control grid (head-scale bending)
    "warp_fine_mm": 0.0,  # and on a 9^3 grid (structure-scale shape changes); 0: none (the banks before v0.9)
    "p_crop": 0.45,  # per axis: field of view cut into the head
    "crop": [0.55, 0.95],  # kept fraction of the head along a cropped axis
    "margin": [1.0, 1.35],  # field of view / head extent along an uncropped axis
    "shift": 0.12,  # random shift of the field of view centre, fraction of the head extent
    "grid": [128, 176],  # voxels along the longest axis of the field of view
    "p_thick": 0.25,  # real image acquired with thick slices along one random axis
    "thick_mm": [2.5, 6.0],
    # clinic edges (0 = off: the banks before v0.12 keep their variants; drawn after everything above)
    "p_deep_cut": 0.0,  # one axis's field of view ends near the deep grey structures (slab edges, cut scans)
    "deep_cut_mm": 25.0,  # that edge lies within +- this of the head centre
    "p_slab": 0.0,  # one axis is a thin slab through the deep grey structures
    "slab_mm": [20.0, 45.0],
    "p_atrophy": 0.0,  # enlarged ventricles and sulci, thinner hippocampi; the labels shrink with the image
    "atrophy_csf_mm": [1.0, 2.0],  # inner CSF grown by this (source grid, 1 mm) into the tissue around it
    "atrophy_hippo_mm": [1.0, 1.3],  # hippocampus and amygdala lose the rim within this of their surface
}


@dataclass
class Source:
    """One labelled source volume in memory (SimpleITK array order), with its grid."""

    id: str
    modality: str
    image: sitk.Image
    images: List[sitk.Image]  # real images of the same head (e.g. with and without skull, a finer scan)
    layers: Dict[str, np.ndarray]
    gen: Optional[np.ndarray]
    head_box: Tuple[np.ndarray, np.ndarray]  # physical (LPS) min and max corner of the head
    stripped: Tuple[int, ...] = ()  # indices of ``images`` without skull and scalp (no "head" target there)


def load_source(spec: Dict) -> Source:
    """Read a source entry of ``bank.sources``: ``image`` (+ ``extra_images``), ``layers``, ``modality``, ``synth``."""
    image = read_image(spec["image"])
    images = [image] + [_on_grid(read_image(p), image) for p in spec.get("extra_images", [])]
    layers = {}
    for name, lspec in spec.get("layers", {}).items():
        layers[name] = _layer_array(lspec, image)
    modality = spec.get("modality", "MR").upper()
    gen = None
    if spec.get("synth") and modality == "MR":
        brain = layers.get("brain")
        if brain is None:
            raise ValueError(f"source {spec['id']}: synthesis needs a 'brain' layer")
        aal = layers.get("aal", np.zeros_like(brain))
        mid = image.TransformPhysicalPointToContinuousIndex((0.0, 0.0, 0.0))[0] if spec.get("mni") else None
        if mid is None:
            mid = (image.GetSize()[0] - 1) / 2.0
        gen = headmodel.generation_labels(image, brain > 0, aal, mid)
    head = gen > 0 if gen is not None else (sitk.GetArrayViewFromImage(image) > spec.get("head_threshold", -300))
    stripped = tuple(int(i) for i in spec.get("stripped_images", []))
    return Source(spec["id"], modality, image, images, layers, gen, _physical_box(image, head), stripped)


def _on_grid(extra: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """A finer image of the same head resampled (anti-aliased) onto the reference grid once, so every variant
    samples from a grid of the same resolution."""
    if min(extra.GetSpacing()) >= 0.9 * min(reference.GetSpacing()):
        return extra
    sigma = [0.4 * r for r in reference.GetSpacing()]
    smooth = sitk.SmoothingRecursiveGaussian(sitk.Cast(extra, sitk.sitkFloat32), sigma)
    return sitk.Resample(smooth, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def _layer_array(spec: Dict, reference: sitk.Image) -> np.ndarray:
    """A label layer on the reference grid in SimpleITK array order; ``geometry_from`` copies a correct header
    onto a label map whose own header is wrong (FSL atlases shipped without their MNI placement)."""
    if "geometry_from" in spec:
        labels = read_image(spec["path"])
        labels.CopyInformation(read_image(spec["geometry_from"]))
        labels = labels_on_grid(labels, reference)
        array = sitk.GetArrayFromImage(labels)
        return array.astype(np.uint16 if array.max() > 255 else np.uint8)
    from TextSegmentLib.imaging import from_canonical, reorientation_for

    # read_layer returns canonical order; go back to the reference's array order (all sources are resampled below)
    canon = read_layer(spec, reference)
    return np.ascontiguousarray(from_canonical(canon, reorientation_for(reference.GetDirection())))


def _physical_box(image: sitk.Image, mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    idx = np.argwhere(mask)
    lo, hi = idx.min(axis=0)[::-1], idx.max(axis=0)[::-1]  # (i, j, k)
    corners = [
        image.TransformIndexToPhysicalPoint([int(c) for c in (x, y, z)])
        for x in (lo[0], hi[0])
        for y in (lo[1], hi[1])
        for z in (lo[2], hi[2])
    ]
    pts = np.array(corners)
    return pts.min(axis=0), pts.max(axis=0)


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def random_geometry(source: Source, rng: np.random.Generator, opt: Dict) -> Dict:
    """Draw a variant: the output grid (LPS, isotropic) and the output -> source transform parameters."""
    lo, hi = source.head_box
    centre = (lo + hi) / 2
    extent = hi - lo
    scale = rng.uniform(*opt["scale"]) * (1 + rng.uniform(-opt["axis_scale"], opt["axis_scale"], 3))
    angles = np.deg2rad(rng.uniform(-opt["rotate_deg"], opt["rotate_deg"], 3))
    shear = rng.uniform(-opt["shear"], opt["shear"], 3)
    matrix = _rotation(*angles) @ np.diag(scale)
    matrix[0, 1] += shear[0]
    matrix[0, 2] += shear[1]
    matrix[1, 2] += shear[2]
    new_extent = np.abs(matrix) @ extent  # bounding extent of the transformed head
    fov = np.empty(3)
    shift = np.zeros(3)
    cropped = []
    for a in range(3):
        if rng.random() < opt["p_crop"]:
            keep = rng.uniform(*opt["crop"])
            fov[a] = new_extent[a] * keep
            shift[a] = rng.choice([-1, 1]) * (new_extent[a] - fov[a]) / 2 * rng.uniform(0.3, 1.0)
            cropped.append(a)
        else:
            fov[a] = new_extent[a] * rng.uniform(*opt["margin"])
            shift[a] = rng.uniform(-opt["shift"], opt["shift"]) * new_extent[a]
    n_max = int(rng.integers(opt["grid"][0], opt["grid"][1] + 1))
    spacing = float(fov.max() / n_max)
    size = [max(8, int(round(f / spacing))) for f in fov]
    thick = None
    if rng.random() < opt["p_thick"]:
        thick = (int(rng.integers(3)), float(rng.uniform(*opt["thick_mm"])))
    geom = {
        "matrix": matrix.tolist(),  # maps source offsets from the head centre to output offsets
        "centre": centre.tolist(),
        "shift": shift.tolist(),
        "size": size,
        "spacing": spacing,
        "warp_mm": float(rng.uniform(0, opt["warp_mm"])),
        "warp_seed": int(rng.integers(2**31)),
        "cropped_axes": cropped,
        "thick": thick,
        "image_index": int(rng.integers(len(source.images))),
    }
    if opt.get("warp_fine_mm", 0.0) > 0:  # drawn last: banks without it keep their variants
        geom["warp_fine_mm"] = float(rng.uniform(0, opt["warp_fine_mm"]))
        geom["warp_fine_seed"] = int(rng.integers(2**31))
    _clinic_edges(geom, rng, opt, new_extent, matrix @ (_deep_centre(source) - centre))
    return geom


def _deep_centre(source: Source) -> np.ndarray:
    """Physical centre (LPS) of the deep grey structures (AAL caudate to thalamus), else of the head; cached."""
    cached = getattr(source, "_deep_centre", None)
    if cached is not None:
        return cached
    lo, hi = source.head_box
    centre = (lo + hi) / 2
    aal = source.layers.get("aal")
    if aal is not None:
        idx = np.argwhere((aal >= 71) & (aal <= 78))
        if len(idx):
            centre = np.asarray(source.image.TransformContinuousIndexToPhysicalPoint(idx.mean(axis=0)[::-1].tolist()))
    object.__setattr__(source, "_deep_centre", centre)
    return centre


def _clinic_edges(geom: Dict, rng: np.random.Generator, opt: Dict, head_extent: np.ndarray, deep: np.ndarray) -> None:
    """Fields of view that end at the deep grey structures, thin slabs through them, and atrophy (drawn last, only
    when enabled, so that older banks keep their variants). ``deep``: the deep grey centre's offset from the head
    centre in output coordinates (mm)."""
    if opt.get("p_deep_cut", 0.0) > 0 and rng.random() < opt["p_deep_cut"]:
        a = int(rng.integers(3))
        half = head_extent[a] / 2 * rng.uniform(*opt["margin"])
        edge = deep[a] + rng.uniform(-opt["deep_cut_mm"], opt["deep_cut_mm"])  # offset from the head centre
        side = 1 if rng.random() < 0.5 else -1  # which part of the head is kept
        lo, hi = (edge, half) if side > 0 else (-half, edge)
        _set_axis(geom, a, hi - lo, (hi + lo) / 2, "deep_cut")
    if opt.get("p_slab", 0.0) > 0 and rng.random() < opt["p_slab"]:
        a = int(rng.integers(3))
        width = rng.uniform(*opt["slab_mm"])
        _set_axis(geom, a, width, deep[a] + rng.uniform(-15.0, 15.0), "slab")
    if opt.get("p_atrophy", 0.0) > 0 and rng.random() < opt["p_atrophy"]:
        geom["atrophy"] = {
            "csf_mm": float(rng.uniform(*opt["atrophy_csf_mm"])),
            "hippo_mm": float(rng.uniform(*opt["atrophy_hippo_mm"])),
            "fraction": float(rng.uniform(0.3, 0.8)),
            "seed": int(rng.integers(2**31)),
        }


def _set_axis(geom: Dict, axis: int, fov_mm: float, centre_offset: float, kind: str) -> None:
    """Replace one output axis's field of view (``fov_mm`` wide, centred ``centre_offset`` mm from the head
    centre); the grid spacing stays, so the axis gets fewer voxels."""
    sp = geom["spacing"]
    geom["size"][axis] = max(8, int(round(fov_mm / sp)))
    geom["shift"][axis] = float(centre_offset)
    geom.setdefault("edges", []).append({"axis": axis, "kind": kind, "fov_mm": float(fov_mm)})
    if axis not in geom["cropped_axes"]:
        geom["cropped_axes"].append(axis)


def _source_points(geom: Dict) -> Tuple[np.ndarray, Tuple[int, int, int]]:
    """Physical source point (LPS, mm) of every output voxel, (z, y, x, 3) array, and the output shape."""
    nx, ny, nz = geom["size"]
    sp = geom["spacing"]
    axes = [(np.arange(n) - (n - 1) / 2) * sp for n in (nx, ny, nz)]
    out_centre = np.asarray(geom["centre"]) + np.asarray(geom["shift"])
    inv = np.linalg.inv(np.asarray(geom["matrix"]))
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    offsets = np.stack([xx, yy, zz], axis=-1) + (out_centre - np.asarray(geom["centre"]))
    if geom["warp_mm"] > 0:
        offsets = offsets + _warp((nz, ny, nx), geom["warp_mm"], geom["warp_seed"])
    if geom.get("warp_fine_mm", 0.0) > 0:
        offsets = offsets + _warp((nz, ny, nx), geom["warp_fine_mm"], geom["warp_fine_seed"], grid=9)
    pts = offsets @ inv.T + np.asarray(geom["centre"])
    return pts.astype(np.float32), (nz, ny, nx)


def _warp(shape: Tuple[int, int, int], std_mm: float, seed: int, grid: int = 5) -> np.ndarray:
    """A smooth random displacement field (mm): a ``grid``^3 grid of Gaussian vectors, linearly upsampled."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0, std_mm, (3, grid, grid, grid))
    zoom = [s / grid for s in shape]
    return np.stack([ndimage.zoom(c, zoom, order=1)[: shape[0], : shape[1], : shape[2]] for c in coarse], axis=-1)


def _sample(image: sitk.Image, array: np.ndarray, pts: np.ndarray, order: int, cval: float = 0.0) -> np.ndarray:
    """Values of ``array`` (on ``image``'s grid) at physical points ``pts`` (..., 3)."""
    origin = np.asarray(image.GetOrigin())
    d = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())[None, :]
    idx = (pts.reshape(-1, 3) - origin) @ np.linalg.inv(d).T  # continuous (i, j, k)
    coords = idx[:, ::-1].T  # array order (k, j, i)
    out = ndimage.map_coordinates(array, coords, order=order, mode="constant", cval=cval, prefilter=False)
    return out.reshape(pts.shape[:-1])


def _antialias(array: np.ndarray, image: sitk.Image, spacing: float) -> np.ndarray:
    ratio = spacing / min(image.GetSpacing())
    if ratio <= 1.05:
        return array
    return ndimage.gaussian_filter(array, 0.4 * ratio * min(image.GetSpacing()) / np.asarray(image.GetSpacing())[::-1])


def _thick_slices(array: np.ndarray, axis: int, spacing: float, thick_mm: float) -> np.ndarray:
    """Simulate an acquisition with ``thick_mm`` slices along array axis ``axis``: blur, down- and upsample."""
    factor = thick_mm / spacing
    if factor <= 1.2:
        return array
    blurred = ndimage.gaussian_filter1d(array, 0.75 * factor / 2.0, axis=axis)
    zoom = [1.0] * 3
    zoom[axis] = 1 / factor
    low = ndimage.zoom(blurred, zoom, order=1)
    back = [array.shape[a] / low.shape[a] for a in range(3)]
    up = ndimage.zoom(low, back, order=1)
    out = np.zeros_like(array)
    sl = tuple(slice(0, min(a, b)) for a, b in zip(array.shape, up.shape))
    out[sl] = up[sl]
    return out


def make_variant(source: Source, seed: int, opt: Dict) -> Tuple[Dict[str, np.ndarray], Dict]:
    """Arrays of one variant in canonical LPS order and its description."""
    rng = np.random.default_rng(seed)
    geom = random_geometry(source, rng, opt)
    pts, shape = _source_points(geom)
    real = source.images[geom["image_index"]]
    real_array = sitk.GetArrayFromImage(real).astype(np.float32)
    gen, layers = source.gen, source.layers
    if geom.get("atrophy") and gen is not None and source.modality != "CT":
        real_array, gen, layers = _atrophied(source, real_array, geom["atrophy"], geom["atrophy"]["seed"])
    cval = -1024.0 if source.modality == "CT" else 0.0
    image = _sample(real, _antialias(real_array, real, geom["spacing"]), pts, 1, cval)
    if geom["thick"] is not None:
        image = _thick_slices(image, 2 - geom["thick"][0], geom["spacing"], geom["thick"][1])
    arrays: Dict[str, np.ndarray] = {}
    if source.modality == "CT":
        arrays["image"] = np.clip(np.rint(image), -1024, 3071).astype(np.int16)
    else:
        arrays["image"] = np.clip(np.rint(normalize_mr(image)), 0, 255).astype(np.uint8)
    for name, lab in layers.items():
        arrays[f"layer_{name}"] = _sample(source.image, lab, pts, 0).astype(lab.dtype)
    if gen is not None:
        arrays["gen"] = _sample(source.image, gen, pts, 0).astype(np.uint8)
    info = {"source": source.id, "modality": source.modality, "seed": seed, "shape": list(shape), **geom}
    info["stripped"] = geom["image_index"] in source.stripped
    return arrays, info


#: gen classes that atrophy turns into CSF next to the inner CSF (white matter, grey matter, deep nuclei)
_TISSUE = [headmodel.WM_L, headmodel.WM_R, headmodel.GM_L, headmodel.GM_R] + list(range(10, 18))
_HIPPO = [18, 19]  # hippocampus + amygdala classes
_KEEP_LAYERS = ("brain", "head", "skull")  # whole-organ layers that keep the CSF the atrophy adds


def atrophy_lost(gen: np.ndarray, spacing: Sequence[float], params: Dict, seed: int) -> np.ndarray:
    """Voxels that atrophy turns into CSF, on the source grid (``spacing`` in array order): tissue within
    ``csf_mm`` of the inner CSF (ventricles and sulci grow) and the hippocampus/amygdala rim within ``hippo_mm`` of
    its surface, each kept where a smooth random field is below ``fraction`` (patchy loss, as in real atrophy)."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random(gen.shape, dtype=np.float32), 3.0)
    keep = field < np.quantile(field[::7, ::7, ::7], params.get("fraction", 1.0))  # that fraction of the voxels
    csf = gen == headmodel.CSF
    lost = np.zeros(gen.shape, dtype=bool)
    if csf.any():
        near = ndimage.distance_transform_edt(~csf, sampling=spacing) <= params["csf_mm"]
        lost |= near & np.isin(gen, _TISSUE) & keep
    hippo = np.isin(gen, _HIPPO)
    if hippo.any():
        rim = ndimage.distance_transform_edt(hippo, sampling=spacing) <= params["hippo_mm"]
        lost |= hippo & rim & keep
    return lost


def _atrophied(source: Source, real_array: np.ndarray, params: Dict, seed: int):
    """Copies of the real image, the generation map and the label layers of ``source`` with atrophy applied (the
    lost voxels become CSF: dark in the real image, CSF in the generation map, unlabelled in every structure layer
    but the whole brain, head and skull), so the labelled volumes shrink with the image."""
    spacing = tuple(float(v) for v in source.image.GetSpacing()[::-1])
    lost = atrophy_lost(source.gen, spacing, params, seed)
    gen = source.gen.copy()
    csf_value = float(np.median(real_array[gen == headmodel.CSF])) if (gen == headmodel.CSF).any() else 0.0
    gen[lost] = headmodel.CSF
    if real_array.shape == lost.shape:
        real_array = real_array.copy()
        real_array[lost] = csf_value
    layers = {}
    for name, lab in source.layers.items():
        if name not in _KEEP_LAYERS:
            lab = lab.copy()
            lab[lost] = 0
        layers[name] = lab
    return real_array, gen, layers


def plane_counts(arrays: Dict[str, np.ndarray], structures: Sequence[Structure], spacing: float, size: int):
    """Per plane: (N, n_structures) int32 pixel counts at model resolution (-1 where the layer is missing)."""
    layers = {k[len("layer_") :]: v for k, v in arrays.items() if k.startswith("layer_")}
    if "gen" in arrays:
        layers["gen"] = arrays["gen"]
    out = {}
    for plane in SLICE_AXES:
        views = {name: slice_view(lab, plane) for name, lab in layers.items()}
        n, h, w = next(iter(views.values())).shape
        rs, cs = slice_pixel_spacing((spacing, spacing, spacing), plane)
        fit = plan_fit(h, w, rs, cs, size)
        area = (fit.h / h) * (fit.w / w)
        counts = np.full((n, len(structures)), -1, dtype=np.int32)
        hist = {name: _slice_histograms(v) for name, v in views.items()}
        for j, s in enumerate(structures):
            cols = [
                hist[layer][:, [v for v in values if v < hist[layer].shape[1]]].sum(axis=1)
                for layer, values in s.sources.items()
                if layer in hist
            ]
            if cols:
                counts[:, j] = np.rint(np.sum(cols, axis=0) * area).astype(np.int32)
        out[plane] = counts
    return out


def _slice_histograms(view: np.ndarray) -> np.ndarray:
    n = view.shape[0]
    flat = view.reshape(n, -1).astype(np.int64)
    top = int(flat.max()) + 1
    offsets = (np.arange(n) * top)[:, None]
    return np.bincount((flat + offsets).ravel(), minlength=n * top).reshape(n, top)


def write_variant(out_dir: Path, arrays: Dict[str, np.ndarray], info: Dict, counts: Dict[str, np.ndarray]) -> None:
    """Write one variant folder atomically (a temporary folder renamed into place)."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        np.save(tmp / f"{name}.npy", np.ascontiguousarray(a))
    for plane, c in counts.items():
        np.save(tmp / f"counts_{plane}.npy", c)
    if "gen" in arrays:
        info["gen_counts"] = np.bincount(arrays["gen"].ravel(), minlength=headmodel.N_CLASSES).tolist()
    with open(tmp / "variant.json", "w", encoding="utf-8") as fh:
        json.dump(info, fh, indent=1)
    tmp.replace(out_dir)


def build_bank(cfg: Dict, structures: List[Structure], out: Path, count: Optional[int] = None) -> Path:
    """Create (or complete) the bank of a config's ``bank`` section; existing variants are kept (resumable)."""
    section = cfg["bank"]
    opt = {**SPATIAL, **section.get("spatial", {})}
    size = int(cfg["prepare"]["image_size"])
    out.mkdir(parents=True, exist_ok=True)
    sources = [load_source(s) for s in section["sources"]]
    weights = np.array([float(s.get("weight", 1.0)) for s in section["sources"]])
    total = int(count or section.get("count", 100))
    val = int(section.get("val_count", 6))
    seed = int(section.get("seed", 0))
    bank = {
        "version": 1,
        "image_size": size,
        "min_pixels": int(cfg["prepare"].get("min_pixels", 20)),
        "structures": [s.to_dict() for s in structures],
        "variants": [],
    }
    with open(out / BANK, "w", encoding="utf-8") as fh:  # first, so training can start on a growing bank
        json.dump(bank, fh, indent=1)
    variants = []
    for v in list(range(total, total + val)) + list(range(total)):  # validation variants first
        split = "val" if v >= total else "train"
        vid = f"{'val' if split == 'val' else 'v'}{v:04d}"
        rng = np.random.default_rng([seed, v, 99 if split == "val" else 1])
        src = sources[int(rng.choice(len(sources), p=weights / weights.sum()))]
        folder = out / vid
        if not (folder / "variant.json").is_file():
            t0 = time.time()
            arrays, info = make_variant(src, int(rng.integers(2**31)), opt)
            counts = plane_counts(arrays, structures, info["spacing"], size)
            info.update({"id": vid, "split": split})
            write_variant(folder, arrays, info, counts)
            log.info("variant %s (%s, %s) in %.1f s", vid, src.id, info["shape"], time.time() - t0)
        variants.append({"id": vid, "split": split, "source": src.id, "modality": src.modality})
    bank["variants"] = variants
    with open(out / BANK, "w", encoding="utf-8") as fh:
        json.dump(bank, fh, indent=1)
    return out


__all__ = ["build_bank", "make_variant", "structure_mask", "plane_counts", "load_source"]
