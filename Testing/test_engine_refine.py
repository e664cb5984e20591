"""Refinement: locality, undo, voxel/physical coordinates on reoriented inputs, no re-encoding."""

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_volumes import brain_crop, reoriented  # noqa: E402

from TextSegmentLib.engine import InputError, Segmenter  # noqa: E402


@pytest.fixture(scope="module")
def brain():
    return brain_crop((40, 48, 14))


@pytest.fixture()
def segmenter(tiny_bundle):
    return Segmenter(str(tiny_bundle), device="cpu", batch_size=4)


def changed_k(before: np.ndarray, after: np.ndarray) -> list:
    """Axial (k) indices of the input array where two masks differ."""
    return sorted(np.flatnonzero((before != after).reshape(before.shape[0], -1).any(axis=1)).tolist())


def spy_boxes(seg: Segmenter) -> list:
    calls = []
    original = seg.model.decode

    def decode(*args, **kwargs):
        calls.append({k: v for k, v in kwargs.items() if k in ("boxes", "points", "point_labels", "mask_inputs")})
        return original(*args, **kwargs)

    seg.model.decode = decode
    return calls


def test_refinement_changes_only_the_propagated_slices(segmenter, brain):
    res = segmenter.segment(brain, ["brain"], min_component_ml=0.0, presence_threshold=0.0)
    before = res.mask(0)
    encoded = []
    original = segmenter.model.encode_image
    segmenter.model.encode_image = lambda x: encoded.append(len(x)) or original(x)
    segmenter.refine(res, 0, 7, box=(10, 12, 30, 36), max_propagation=2)
    assert encoded == []  # cached slice embeddings are reused
    assert set(changed_k(before, res.mask(0))) <= set(range(5, 10))
    assert res.segments[0].refinements == 1


def test_refinement_without_presence_changes_one_slice_and_undo_restores(segmenter, brain):
    res = segmenter.segment(brain, ["left hippocampus", "brain"], presence_threshold=1.0)
    labels_before = sitk.GetArrayFromImage(res.labelmap)
    masks_before = [res.mask(0), res.mask(1)]
    calls = spy_boxes(segmenter)
    segmenter.refine(res, 0, 6, box=(8, 8, 30, 40), points=[(20, 20), (9, 9)], labels=[1, 0])
    # the refined slice with box + points; each neighbour tried once with the box carried on (no points) and the
    # segment inside it, then presence stops it
    assert len(calls) == 3 and all("points" not in c and "boxes" in c and "mask_inputs" in c for c in calls[1:])
    assert calls[0]["boxes"].shape == (1, 4) and calls[0]["point_labels"].tolist() == [[1, 0]]
    assert set(changed_k(masks_before[0], res.mask(0))) <= {6}
    assert np.array_equal(masks_before[1], res.mask(1))  # other prompts untouched
    assert res.mask(0)[6].any()  # the user's box is taken even where the model saw nothing
    segmenter.undo(res)
    assert np.array_equal(sitk.GetArrayFromImage(res.labelmap), labels_before)
    assert res.segments[0].refinements == 0 and np.array_equal(res.mask(0), masks_before[0])
    segmenter.undo(res)  # nothing left: no error


def test_voxel_and_physical_boxes_agree_across_orientations(tiny_bundle, brain):
    ras_like = reoriented(brain, (1, 0, 2), (True, False, True))  # swapped i/j, flipped; same physical volume
    seg = Segmenter(str(tiny_bundle), device="cpu")
    i0, j0, i1, j1, k = 6, 10, 30, 40, 5
    corners = [brain.TransformIndexToPhysicalPoint((i0, j0, k)), brain.TransformIndexToPhysicalPoint((i1, j1, k))]
    boxes = []
    results = []
    for image, box, slice_index, coords in [
        (brain, (i0, j0, i1, j1), k, "voxel"),
        (brain, (corners[0][0], corners[0][1], corners[1][0], corners[1][1]), corners[0], "physical"),
        (ras_like, tuple(corners), corners[0], "physical"),
        (
            ras_like,
            (ras_like.TransformPhysicalPointToIndex(corners[0]), ras_like.TransformPhysicalPointToIndex(corners[1])),
            ras_like.TransformPhysicalPointToIndex(corners[0])[2],
            "voxel",
        ),
    ]:
        res = seg.segment(image, ["brain"], presence_threshold=1.0)
        calls = spy_boxes(seg)
        seg.refine(res, 0, slice_index, box=box, coords=coords)
        boxes.append(calls[0]["boxes"])
        results.append(sitk.Resample(res.labelmap, brain, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
        seg.model.decode = type(seg.model).decode.__get__(seg.model)
    for other in boxes[1:]:
        assert np.allclose(other.numpy(), boxes[0].numpy(), atol=1e-4)
    ref = sitk.GetArrayFromImage(results[0])
    for other in results[1:]:
        assert np.array_equal(sitk.GetArrayFromImage(other), ref)


def test_refinement_with_embeddings_over_the_cache_cap(tiny_bundle, brain):
    seg = Segmenter(str(tiny_bundle), device="cpu", cache_limit_mb=0.01)
    res = seg.segment(brain, ["brain"], presence_threshold=1.0)
    encoded = []
    original = seg.model.encode_image
    seg.model.encode_image = lambda x: encoded.append(len(x)) or original(x)
    seg.refine(res, 0, 3, points=[(20, 20)])
    # nothing was found (no belief): the point acts on its slice, the only one encoded again
    assert sum(encoded) == 1


def test_refinement_input_errors(segmenter, brain):
    res = segmenter.segment(brain, ["brain"])
    with pytest.raises(InputError):
        segmenter.refine(res, 0, 3)
    with pytest.raises(InputError):
        segmenter.refine(res, 0, 99, box=(1, 1, 5, 5))
    with pytest.raises(InputError):
        segmenter.refine(res, 0, 3, points=[(1, 1)], labels=[1, 0])
    with pytest.raises(ValueError):
        segmenter.refine(res, 0, 3, box=(1, 1, 5, 5), coords="pixels")
