"""The edges of a scan on the Colin27 T1 (the training subject; never the held-out MNI152): fields of view cut
through the deep grey structures, fused with several ``fusion.EDGE_MM`` (a tiny value = the plain weighted mean),
and the agreement of a grid tilted about the head-foot axis with the straight image. Prints tables.

    python benchmarks/edges.py --edge-mm 1e-6 25 40 60 --oblique 15 30
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from TextSegmentLib.app import open_segmenter  # noqa: E402
from TextSegmentLib.engine import fusion  # noqa: E402
from training.heldout import DEEP_GREY  # noqa: E402
from training.metrics import dice  # noqa: E402
from training.robustness_edges import oblique_grid  # noqa: E402

CH2, AAL = "/usr/share/mricron/templates/ch2.nii.gz", "/usr/share/mricron/templates/aal.nii.gz"


def cuts(img: sitk.Image, aal: sitk.Image):
    arr = sitk.GetArrayFromImage(aal)
    k, j, _ = np.argwhere(np.isin(arr, [77, 78])).mean(axis=0).astype(int)
    nx, ny, nz = img.GetSize()

    def roi(lo, hi):
        size = [h - a for a, h in zip(lo, hi)]
        return sitk.RegionOfInterest(img, size, lo), sitk.RegionOfInterest(aal, size, lo)

    return {
        "whole head": (img, aal),
        "top edge at mid-thalamus": roi([0, 0, 0], [nx, ny, int(k)]),
        "top edge 10 mm above": roi([0, 0, 0], [nx, ny, int(k) + 10]),
        "bottom edge at mid-thalamus": roi([0, 0, int(k)], [nx, ny, nz]),
        "coronal slab, 30 mm": roi([0, int(j) - 15, 0], [nx, int(j) + 15, nz]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edge-mm", type=float, nargs="*", default=[1e-6, 40.0])
    parser.add_argument("--oblique", type=float, nargs="*", default=[15.0])
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    img = sitk.ReadImage(CH2)
    aal = sitk.Resample(sitk.ReadImage(AAL), img, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    seg = open_segmenter(args.model, device="cpu")
    names = list(DEEP_GREY)
    prompts = [f"the {n}" for n in names]
    print("| field of view | " + " | ".join(f"EDGE_MM {e:g}" for e in args.edge_mm) + " |")
    rows = {}
    for edge in args.edge_mm:
        fusion.EDGE_MM = edge
        for name, (image, labels) in cuts(img, aal).items():
            res = seg.segment(image, prompts)
            ref = sitk.GetArrayFromImage(labels)
            rows.setdefault(name, []).append(
                np.mean([dice(res.mask(i) > 0, np.isin(ref, DEEP_GREY[n])) for i, n in enumerate(names)])
            )
    for name, values in rows.items():
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    fusion.EDGE_MM = 40.0
    straight = seg.segment(img, prompts)
    print("\n| oblique grid | " + " | ".join(names) + " | mean |")
    for deg in args.oblique:
        tilted = oblique_grid(img, deg)
        res = seg.segment(tilted, prompts)
        ds = []
        for i in range(len(names)):
            m = sitk.GetImageFromArray(res.mask(i).astype(np.uint8))
            m.CopyInformation(tilted)
            back = sitk.GetArrayFromImage(sitk.Resample(m, img, sitk.Transform(), sitk.sitkNearestNeighbor, 0)) > 0
            ds.append(dice(back, straight.mask(i) > 0))
        print(f"| {deg:g} deg | " + " | ".join(f"{d:.2f}" for d in ds) + f" | {np.mean(ds):.3f} |")


if __name__ == "__main__":
    main()
