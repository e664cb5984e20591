"""Regenerate the frozen-mask regression case (Testing/data/frozen) after a deliberate model change.

    .venv/bin/python scripts/regenerate_frozen_masks.py

Rebuilds the stored 3 mm T1 from the Colin27 T1 (Debian mricron-data), segments it with the embedded default model
for the demo prompts (float32 on the CPU, the settings of Testing/test_frozen_masks.py), and writes the masks and
frozen.json. Commit the three files with the model; the test then holds the new model to them.
"""

import json
import sys
from pathlib import Path

import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "Testing")]

from frozen_case import FOLDER, IMAGE, MASKS, META, SETTINGS, SPACING_MM, make_image, pack, segment  # noqa: E402

from TextSegmentLib.demo import DEMO_PROMPTS  # noqa: E402


def main() -> int:
    FOLDER.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(make_image(), str(IMAGE), True)
    result, masks = segment(IMAGE, list(DEMO_PROMPTS))
    packed = sitk.GetImageFromArray(pack(masks))
    packed.CopyInformation(result.volume.image)
    sitk.WriteImage(packed, str(MASKS), True)
    model = result.info["model"]
    meta = {
        "description": "the default model's masks for the demo prompts on the Colin27 T1 at 3 mm; bit i of "
        "masks.nii.gz is prompt i. Regenerate with: .venv/bin/python scripts/regenerate_frozen_masks.py",
        "model": f"{model['name']}-v{model['version']}",
        "settings": dict(SETTINGS, views=list(result.views)),
        "spacing_mm": SPACING_MM,
        "prompts": list(DEMO_PROMPTS),
        "voxels": [int(m.sum()) for m in masks],
        "found": [s.found for s in result.segments],
    }
    META.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    for prompt, voxels in zip(meta["prompts"], meta["voxels"]):
        print(f"{prompt:20s} {voxels:7d} voxels")
    print(f"wrote {IMAGE}, {MASKS}, {META} ({meta['model']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
