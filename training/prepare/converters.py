"""Converters from common dataset layouts to case lists and structure entries of the ``prepare`` section.

``prepare.datasets`` entries (each may set ``region``, ``ct_window``, ``names`` (an English names map),
``val_fraction`` and ``max_cases``):

* ``format: msd`` / ``nnunet``: ``root`` holding ``dataset.json`` + ``imagesTr/`` + ``labelsTr/`` (MSD lists its
  cases in ``training``; nnU-Net v2 pairs ``imagesTr/<case>_0000<ending>`` with ``labelsTr/<case><ending>``).
* ``format: totalsegmentator``: ``root/<case>/ct.nii.gz`` (or ``image``) + ``root/<case>/segmentations/<name>.nii.gz``,
  one binary mask file per structure (``kidney_left`` becomes "left kidney").
* ``format: generic``: ``cases: [{id, image, labels}]`` + ``names_table`` (``value name`` per line) or
  ``label_names: {value: name}``.

Explicit ``prepare.cases`` and ``prepare.structures`` are passed through unchanged.
"""

import json
from pathlib import Path
from typing import Dict, List, Tuple

from ..vocabulary import read_names_table

IMAGE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


def _stem(path: Path) -> str:
    name = path.name
    for ending in IMAGE_ENDINGS:
        if name.endswith(ending):
            return name[: -len(ending)]
    return path.stem


def _split(cases: List[Dict], spec: Dict) -> List[Dict]:
    cases = sorted(cases, key=lambda c: c["id"])
    if spec.get("max_cases"):
        cases = cases[: int(spec["max_cases"])]
    n_val = int(round(len(cases) * float(spec.get("val_fraction", 0.0))))
    for i, case in enumerate(cases):
        case.setdefault("split", "val" if i >= len(cases) - n_val else "train")
    return cases


def _entry(spec: Dict, layer: str, names: Dict[int, str]) -> Dict:
    out = {"table": True, "layer": layer, "label_names": names}
    for key in ("region", "ct_window", "names"):
        if spec.get(key):
            out[key] = spec[key]
    return out


def msd_dataset(spec: Dict) -> Tuple[List[Dict], List[Dict]]:
    """MSD or nnU-Net (v1/v2) raw dataset folder."""
    root = Path(spec["root"])
    meta = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    labels = meta.get("labels", {})
    names: Dict[int, str] = {}
    for k, v in labels.items():
        if str(k).isdigit():  # MSD / nnU-Net v1: {"1": "liver"}
            names[int(k)] = str(v)
        elif isinstance(v, int):  # nnU-Net v2: {"liver": 1}
            names[v] = str(k)
    names.pop(0, None)
    modality = meta.get("modality") or meta.get("channel_names") or {}
    first = str(modality.get("0", "")).upper()
    prefix = spec.get("id_prefix", meta.get("name", root.name))
    cases = []
    if meta.get("training"):
        for item in meta["training"]:
            image, label = root / item["image"], root / item["label"]
            if not image.exists():  # nnU-Net v1 lists names without the channel suffix
                image = image.with_name(_stem(image) + "_0000" + image.name[len(_stem(image)) :])
            cases.append(
                {"id": f"{prefix}_{_stem(label)}", "image": str(image), "layers": {prefix: {"path": str(label)}}}
            )
    else:
        ending = meta.get("file_ending", ".nii.gz")
        for label in sorted((root / "labelsTr").glob(f"*{ending}")):
            case = label.name[: -len(ending)]
            image = root / "imagesTr" / f"{case}_0000{ending}"
            cases.append({"id": f"{prefix}_{case}", "image": str(image), "layers": {prefix: {"path": str(label)}}})
    for c in cases:
        if first in ("CT", "MR", "MRI"):
            c["modality"] = "CT" if first == "CT" else "MR"
    return _split(cases, spec), [_entry(spec, prefix, names)]


def totalsegmentator_dataset(spec: Dict) -> Tuple[List[Dict], List[Dict]]:
    """TotalSegmentator-style folders: one binary mask file per structure."""
    root = Path(spec["root"])
    cases, names = [], set()
    prefix = spec.get("id_prefix", root.name)
    for case_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        seg_dir = case_dir / spec.get("segmentations", "segmentations")
        image = next(
            (case_dir / n for n in ("ct.nii.gz", "mri.nii.gz", "image.nii.gz") if (case_dir / n).exists()), None
        )
        if image is None or not seg_dir.is_dir():
            continue
        layers = {}
        for mask in sorted(seg_dir.iterdir()):
            if mask.name.endswith(IMAGE_ENDINGS):
                structure = _stem(mask)
                names.add(structure)
                layers[f"{prefix}:{structure}"] = {"path": str(mask), "threshold": 0}
        cases.append({"id": f"{prefix}_{case_dir.name}", "image": str(image), "layers": layers})
        if spec.get("modality"):
            cases[-1]["modality"] = spec["modality"]
    entries = [_entry(spec, f"{prefix}:{n}", {1: n}) for n in sorted(names)]
    return _split(cases, spec), entries


def generic_dataset(spec: Dict) -> Tuple[List[Dict], List[Dict]]:
    """Images with label maps and one names table."""
    layer = spec.get("layer", "labels")
    names = read_names_table(spec["names_table"]) if spec.get("names_table") else spec.get("label_names", {})
    cases = []
    for item in spec["cases"]:
        case = {"id": item["id"], "image": item["image"], "layers": {layer: {"path": item["labels"]}}}
        for key in ("modality", "split", "synth"):
            if key in item or key in spec:
                case[key] = item.get(key, spec.get(key))
        cases.append(case)
    return _split(cases, spec), [_entry(spec, layer, {int(k): v for k, v in names.items()})]


CONVERTERS = {
    "msd": msd_dataset,
    "nnunet": msd_dataset,
    "totalsegmentator": totalsegmentator_dataset,
    "generic": generic_dataset,
}


def expand_datasets(section: Dict) -> Tuple[List[Dict], List[Dict]]:
    """All cases and structure entries of a ``prepare`` section (explicit ones first, then each dataset's)."""
    cases = [dict(c) for c in section.get("cases", [])]
    entries = [dict(e) for e in section.get("structures", [])]
    for spec in section.get("datasets", []):
        fmt = spec.get("format")
        if fmt not in CONVERTERS:
            raise ValueError(f"unknown dataset format {fmt!r}; choose from {sorted(CONVERTERS)}")
        c, e = CONVERTERS[fmt](spec)
        cases += c
        entries += e
    ids = [c["id"] for c in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate case ids: {duplicates}")
    return cases, entries
