"""Fields of view that end at a structure: the views whose slices the edge cuts must not outvote the view that sees
the structure whole (fusion.EDGE_MM). Real MRI (the Colin27 T1 with its AAL labels), the embedded default model."""

import numpy as np
import pytest
import SimpleITK as sitk

from TextSegmentLib.app import open_segmenter
from TextSegmentLib.engine import fusion
from TextSegmentLib.engine.fusion import edge_factors, edge_ramp, fuse

CH2 = "/usr/share/mricron/templates/ch2.nii.gz"
AAL = "/usr/share/mricron/templates/aal.nii.gz"
LEFT = {"left thalamus": 77, "left putamen": 73, "left caudate nucleus": 71}


def test_edge_factors_follow_the_in_plane_axes_only():
    shape, spacing = (100, 100, 100), (1.0, 1.0, 1.0)
    pos = [np.array([0, 50, 99])] * 3
    axial = edge_factors(shape, spacing, "axial", pos)  # normal along S (axis 0): S edges do not matter
    assert axial.shape == (1, 3, 3)
    assert float(axial[0, 1, 1]) == 1.0 and float(axial[0, 0, 1]) == pytest.approx(fusion.EDGE_FLOOR)
    coronal = edge_factors(shape, spacing, "coronal", pos)  # in-plane S and L
    assert coronal.shape == (3, 1, 3) and float(coronal[0, 0, 1]) == pytest.approx(fusion.EDGE_FLOOR)
    assert edge_ramp(100, 2.0, np.array([9]))[0] == pytest.approx(19.0 / fusion.EDGE_MM)


def test_fuse_renormalises_per_voxel():
    a, c = np.ones((2, 1, 1), np.float32), np.zeros((2, 1, 1), np.float32)
    factors = {"axial": np.ones((1, 1, 1), np.float32), "coronal": np.array([1.0, 0.05], np.float32).reshape(2, 1, 1)}
    out = fuse({"axial": a, "coronal": c}, {"axial": 0.4, "coronal": 0.4}, factors)
    assert out[0, 0, 0] == pytest.approx(0.5) and out[1, 0, 0] == pytest.approx(0.4 / 0.42)


@pytest.fixture(scope="module")
def colin():
    image = sitk.ReadImage(CH2)
    labels = sitk.Resample(sitk.ReadImage(AAL), image, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return image, labels


def _top_cut_at(image, labels, value):
    """The head cut off at the centre of structure ``value`` (the field of view ends there), 120 x 140 mm wide."""
    arr = sitk.GetArrayFromImage(labels)
    z, y, x = np.argwhere(arr == value).mean(axis=0).astype(int)
    lo = [int(max(0, x - 60)), int(max(0, y - 70)), 0]
    size = [120, 140, int(z) + 1]
    size = [min(s, n - a) for s, n, a in zip(size, image.GetSize(), lo)]
    return sitk.RegionOfInterest(image, size, lo), sitk.RegionOfInterest(labels, size, lo)


def _dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


def test_a_field_of_view_cut_through_each_structure_keeps_it(colin, monkeypatch):
    """Cut at the middle of each structure: fusing with the field-of-view weights scores far better than plain
    weights (which let the views that see the structure cut off outvote the one that sees it whole)."""
    seg = open_segmenter("default", device="cpu")  # the embedded default model
    gains, scores = [], {}
    for name, value in LEFT.items():
        image, labels = _top_cut_at(*colin, value)
        ref = sitk.GetArrayFromImage(labels) == value
        aware = _dice(seg.segment(image, [name]).mask(0) > 0, ref)
        with monkeypatch.context() as m:
            m.setattr(fusion, "EDGE_MM", 1e-6)  # the plain weighted mean
            plain = _dice(seg.segment(image, [name]).mask(0) > 0, ref)
        scores[name] = (round(plain, 3), round(aware, 3))
        gains.append(aware - plain)
        assert aware >= plain - 0.02, scores
    assert min(s[1] for s in scores.values()) >= 0.3, scores
    assert np.mean(gains) >= 0.25, scores


def test_a_field_of_view_cut_through_the_brain_goes_on_with_its_mirror_image(colin, monkeypatch):
    """A scan that ends at the middle of the thalami: the views whose slices the top edge cuts see the brain go on
    beyond it (30 mm of its mirror image), which finds the structures along the cut far better than slices that end
    in air; the lowest slices, which cut the neck and not the brain, and a whole head are shown as they are."""
    image, labels = colin
    arr = sitk.GetArrayFromImage(labels)
    top = int(np.argwhere(arr == 77).mean(axis=0)[0])  # mid-thalamus (k)
    size = list(image.GetSize())
    size[2] = top + 1
    cut, cut_labels = sitk.RegionOfInterest(image, size, [0, 0, 0]), sitk.RegionOfInterest(labels, size, [0, 0, 0])
    ref = sitk.GetArrayFromImage(cut_labels)
    names = ["left putamen", "left thalamus", "left hippocampus"]
    values = [73, 77, 37]

    def scores(seg):
        res = seg.segment(cut, names)
        return res, [_dice(res.mask(i) > 0, ref == v) for i, v in enumerate(values)]

    res, padded = scores(open_segmenter("default", device="cpu"))
    assert res.volume.end_pads == ((0, 30), (0, 0), (0, 0))  # canonical S, P, L: the top only, not the neck
    assert res.volume.view("coronal").fit.pad == (30, 0, 0, 0) and res.volume.view("axial").fit.pad == (0, 0, 0, 0)
    for report, value in zip(res.segments, values):  # each reaches the cut (the hippocampal tail too): said so
        assert (ref[-1] == value).any()
        assert any("reaches the top of the scan" in w for w in report.warnings), report.warnings
    whole = open_segmenter("default", device="cpu").segment(image, ["left putamen"])
    assert whole.volume.end_pads == ((0, 0), (0, 0), (0, 0))
    assert not any("reaches" in w for w in whole.segments[0].warnings)
    from TextSegmentLib.engine import volume as engine_volume

    monkeypatch.setattr(engine_volume, "MIRROR_PAD_MM", 0.0)
    _, plain = scores(open_segmenter("default", device="cpu"))
    assert np.mean(padded) >= np.mean(plain) + 0.05, (padded, plain)
    assert min(p - q for p, q in zip(padded, plain)) >= -0.01, (padded, plain)
