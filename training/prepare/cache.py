"""Turn one checked case (image + label layers) into cached model-size slices.

Per case folder: ``image_<window>.npy`` (N, S, S) uint8 in [0, 255] (one per intensity preset used by its
structures), ``layer_<name>.npy`` (N, S, S) label maps at model size, ``counts.npy`` (N, n_structures) int32 pixel
counts of every structure on every slice (-1 where the case has no such layer), ``components.npy`` (its number of
connected pieces there), optional ``synth.npy`` (a full label
map for label-to-image synthesis) and ``case.json``. Normalisation, orientation and resizing come from
``TextSegmentLib.imaging`` so training sees exactly what the inference engine sees.
"""

import json
import logging
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from scipy import ndimage

from TextSegmentLib.engine.volume import check_axis, slice_pixel_spacing, slice_view
from TextSegmentLib.imaging import CT_WINDOWS, detect_ct, fit_slices, normalize_volume, plan_fit

from ..vocabulary import Structure
from .sources import CanonicalVolume, canonical, read_image, read_layer

log = logging.getLogger(__name__)
PLANES = ("axial", "coronal", "sagittal")


class CaseError(ValueError):
    """A case failed its checks; the message names the case and the problem."""


def plane_view(array: np.ndarray, spacing: Sequence[float], plane: str) -> Tuple[np.ndarray, float, float]:
    """Canonical (S, P, L) array -> (N, rows, cols) slices of ``plane`` and their (row, col) spacing: the engine's
    own :func:`slice_view` and :func:`slice_pixel_spacing` (one implementation of how a plane is cut)."""
    rows, cols = slice_pixel_spacing(spacing, check_axis(plane))
    return slice_view(array, plane), rows, cols


def check_case(case_id: str, vol: CanonicalVolume, layers: Dict[str, np.ndarray], max_oblique: float = 20.0) -> None:
    """Open-and-check: finite, non-constant image, sane spacing, label layers on the image grid and non-empty."""
    a = vol.array
    if a.ndim != 3 or min(a.shape) < 2:
        raise CaseError(f"{case_id}: image must be 3D, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise CaseError(f"{case_id}: image has NaN or infinite values")
    if float(a.max()) == float(a.min()):
        raise CaseError(f"{case_id}: image is constant")
    if min(vol.spacing) <= 0 or max(vol.spacing) > 20:
        raise CaseError(f"{case_id}: implausible spacing {vol.spacing}")
    if vol.oblique_degrees > max_oblique:
        log.warning("%s: direction is %.1f degrees oblique; slices use the nearest axis", case_id, vol.oblique_degrees)
    for name, lab in layers.items():
        if lab.shape != a.shape:
            raise CaseError(f"{case_id}: label layer {name} has shape {lab.shape}, image {a.shape}")
        if not lab.any():
            raise CaseError(f"{case_id}: label layer {name} is empty")


def structure_mask(layers: Dict[str, np.ndarray], sources: Dict[str, List[int]]):
    """Boolean mask of a structure from the label layers it has in this case (None when it has none)."""
    mask = None
    for layer, values in sources.items():
        if layer in layers:
            m = np.isin(layers[layer], values)
            mask = m if mask is None else (mask | m)
    return mask


def resize_labels(labels: np.ndarray, values: Sequence[int], fit) -> np.ndarray:
    """Label map (N, H, W) -> (N, S, S): each value resized as a mask with the image's fit, kept where >= 0.5."""
    out = np.zeros((labels.shape[0], fit.size, fit.size), dtype=labels.dtype)
    for v in values:
        mask = labels == v
        rows = np.flatnonzero(mask.any(axis=(1, 2)))
        if rows.size == 0:
            continue
        resized = fit_slices(mask[rows].astype(np.float32), fit).numpy() >= 0.5
        block = out[rows]
        block[resized] = v
        out[rows] = block
    return out


def synthesis_labels(image: np.ndarray, labels: List[np.ndarray], bins: int = 6) -> np.ndarray:
    """A full label map for label-to-image synthesis: the structures' labels, the rest split by intensity.

    Unlabelled pixels get classes 60000.. by intensity quantiles (background below 5 -> 0), so the synthesised image
    keeps the skull, CSF and white matter as separate random-intensity regions.
    """
    out = np.zeros(image.shape, dtype=np.uint16)
    fg = image > 5
    if fg.any():
        edges = np.quantile(image[fg], np.linspace(0, 1, bins + 1)[1:-1])
        out[fg] = 60000 + np.digitize(image[fg], edges).astype(np.uint16)
    for offset, lab in enumerate(labels):
        m = lab > 0
        out[m] = lab[m].astype(np.uint16) + 1000 * offset + 1
    return out


def prepare_case(
    case: Dict, structures: List[Structure], out_dir: Path, image_size: int, planes=("axial",), check_only=False
) -> Dict:
    """Check one case and write its slice cache under ``out_dir / case['id']``; returns its manifest entry.
    With ``check_only`` nothing is written and the entry says what was found (shape, spacing, label values)."""
    case_id = case["id"]
    image = read_image(case["image"])
    vol = canonical(image)
    vol.array = vol.array.astype(np.float32)
    layers = {name: read_layer(spec, image) for name, spec in case.get("layers", {}).items()}
    check_case(case_id, vol, layers)
    if check_only:
        return {
            "id": case_id,
            "shape": list(vol.array.shape),
            "spacing": list(vol.spacing),
            "oblique_degrees": round(vol.oblique_degrees, 2),
            "labels": {n: int(np.unique(a).size - 1) for n, a in layers.items()},
        }
    modality = case.get("modality") or ("CT" if detect_ct(vol.array) else "MR")
    is_ct = modality.upper() == "CT"
    used = [s for s in structures if any(layer in layers for layer in s.sources)]
    windows = sorted({s.ct_window or "soft_tissue" for s in used}) if is_ct else ["mr"]
    case_dir = out_dir / case_id
    case_dir.mkdir(parents=True, exist_ok=True)
    entry = {"id": case_id, "modality": "CT" if is_ct else "MR", "split": case.get("split", "train"), "planes": {}}
    entry["windows"] = windows
    entry["spacing"] = list(vol.spacing)
    normalised = {w: normalize_volume(vol.array, is_ct, CT_WINDOWS.get(w)) for w in windows}
    for plane in planes:
        prefix = "" if plane == "axial" else f"{plane}_"
        first = None
        for w in windows:
            slices, rs, cs = plane_view(normalised[w], vol.spacing, plane)
            fit = plan_fit(slices.shape[1], slices.shape[2], rs, cs, image_size)
            img = np.clip(np.rint(fit_slices(slices, fit).numpy()), 0, 255).astype(np.uint8)
            np.save(case_dir / f"{prefix}image_{w}.npy", img)
            first = img if first is None else first
        resized_layers = {}
        for name, lab in layers.items():
            view, _, _ = plane_view(lab, vol.spacing, plane)
            values = sorted({v for s in used for v in s.sources.get(name, [])})
            resized_layers[name] = resize_labels(np.ascontiguousarray(view), values, fit)
            np.save(case_dir / f"{prefix}layer_{name}.npy", resized_layers[name])
        counts = np.full((first.shape[0], len(structures)), -1, dtype=np.int32)
        parts = np.zeros((first.shape[0], len(structures)), dtype=np.uint8)  # connected components per slice
        for j, s in enumerate(structures):
            mask = structure_mask(resized_layers, s.sources)
            if mask is not None:
                counts[:, j] = mask.sum(axis=(1, 2))
                for k in np.flatnonzero(counts[:, j] > 0):
                    parts[k, j] = min(ndimage.label(mask[k])[1], 255)
        np.save(case_dir / f"{prefix}counts.npy", counts)
        np.save(case_dir / f"{prefix}components.npy", parts)
        if case.get("synth"):
            np.save(case_dir / f"{prefix}synth.npy", synthesis_labels(first, list(resized_layers.values())))
        entry["planes"][plane] = {
            "n_slices": int(first.shape[0]),
            "fit": [fit.height, fit.width, fit.h, fit.w, fit.top, fit.left, fit.size],
            "spacing_mm": [rs * fit.height / fit.h, cs * fit.width / fit.w],
        }
    entry["layers"] = sorted(layers)
    entry["synth"] = bool(case.get("synth"))
    with open(case_dir / "case.json", "w", encoding="utf-8") as fh:
        json.dump(entry, fh, indent=2)
    log.info("%s: %s, %d structures, planes %s", case_id, entry["modality"], len(used), list(planes))
    return entry
