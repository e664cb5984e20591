"""Run the preparation of a config: expand dataset converters, build structures, cache every case, write the manifest.

Manifest (``<cache>/manifest.json``): image size, minimum pixels, planes, the structures (name, layer, values,
laterality, partner, synonyms, region, CT window) and the cases (id, split, modality, windows, slices per plane).
"""

import json
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional

from ..vocabulary import build_structures
from .cache import CaseError, prepare_case
from .converters import expand_datasets
from .preview import write_preview

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def default_min_pixels(image_size: int) -> int:
    """Seed 000 drops masks under 100 pixels at 256 x 256; the same area fraction at other sizes."""
    return max(4, int(round(100 * (image_size / 256) ** 2)))


def check_cases(cfg: Dict) -> List[Dict]:
    """Open and check every case of a config without writing anything: one report per case (``error`` if bad)."""
    section = cfg["prepare"] if "prepare" in cfg else cfg
    cases, entries = expand_datasets(section)
    structures = build_structures(entries)
    reports = []
    for case in cases:
        try:
            reports.append(prepare_case(case, structures, Path("."), 64, check_only=True))
        except (CaseError, RuntimeError, OSError, ValueError) as exc:
            reports.append({"id": case["id"], "error": str(exc)})
    return reports


def prepare(cfg: Dict, cache_dir: Optional[str] = None, only: Optional[List[str]] = None) -> Path:
    """Prepare the ``prepare`` section of a config; returns the cache folder. Bad cases stop the run with CaseError
    unless ``skip_bad_cases`` is set, in which case they are logged and left out."""
    section = cfg["prepare"] if "prepare" in cfg else cfg
    out = Path(cache_dir or section["cache"])
    out.mkdir(parents=True, exist_ok=True)
    size = int(section.get("image_size", 256))
    cases, entries = expand_datasets(section)
    structures = build_structures(entries)
    planes = tuple(section.get("planes", ["axial"]))
    done, skipped = [], []
    for case in cases:
        if only and case["id"] not in only:
            continue
        t0 = time.time()
        try:
            done.append(prepare_case(case, structures, out, size, planes))
            if section.get("preview", True):
                write_preview(out / case["id"], done[-1], structures)
        except (CaseError, RuntimeError, OSError) as exc:
            if not section.get("skip_bad_cases"):
                raise
            log.error("skipping case %s: %s", case["id"], exc)
            skipped.append({"id": case["id"], "error": str(exc)})
        log.info("case %s done in %.1f s", case["id"], time.time() - t0)
    manifest = {
        "version": 1,
        "image_size": size,
        "min_pixels": int(section.get("min_pixels", default_min_pixels(size))),
        "planes": list(planes),
        "structures": [s.to_dict() for s in structures],
        "cases": done,
        "skipped": skipped,
    }
    with open(out / MANIFEST, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1)
    log.info("wrote %s: %d cases, %d structures", out / MANIFEST, len(done), len(structures))
    return out


def load_manifest(cache_dir) -> Dict:
    """Read ``manifest.json`` of a slice cache."""
    with open(Path(cache_dir) / MANIFEST, encoding="utf-8") as fh:
        return json.load(fh)
