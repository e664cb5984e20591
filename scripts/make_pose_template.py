"""Write the head-pose templates that ship with the package (TextSegmentLib/resources/pose/).

The Colin27 T1 (Debian mricron-data's ``ch2.nii.gz``, the training subject of the brain models) and its brain
(``ch2bet.nii.gz``), smoothed and resampled to 4 mm, scaled to uint8: about 40 KB each. ``imaging/pose.py`` registers
an input to them to find how the head is turned. Run once; the files are committed.

    .venv/bin/python scripts/make_pose_template.py
"""

import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from TextSegmentLib.imaging.pose import TEMPLATE_FILES, TEMPLATES_DIR, downsample  # noqa: E402

SOURCES = {"head": "/usr/share/mricron/templates/ch2.nii.gz", "brain": "/usr/share/mricron/templates/ch2bet.nii.gz"}


def main() -> None:
    TEMPLATES_DIR.mkdir(parents=True, exist_ok=True)
    for name, source in SOURCES.items():
        small = downsample(sitk.ReadImage(source), 4.0)
        array = sitk.GetArrayFromImage(small)
        hi = float(array.max()) or 1.0
        out = sitk.GetImageFromArray(np.clip(np.round(array / hi * 255), 0, 255).astype(np.uint8))
        out.CopyInformation(small)
        path = TEMPLATES_DIR / TEMPLATE_FILES[name]
        sitk.WriteImage(out, str(path), useCompression=True)
        print(path.relative_to(ROOT), out.GetSize(), path.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
