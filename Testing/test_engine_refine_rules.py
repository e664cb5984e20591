"""What a refinement promises the user (the rules of TextSegmentLib.engine.refine), with the embedded default model on
a real brain (Colin27 T1 slabs around the right hippocampus, AAL reference): a box bounds the segment on its slice,
propagation stops where the structure ends, a - click removes, a + click adds, undo is bit-exact, and a segment
the user edited (``current=``) is where refinement starts and what undo gives back."""

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_volumes import CH2  # noqa: E402

from TextSegmentLib.engine import Cancelled, InputError, Segmenter  # noqa: E402
from TextSegmentLib.engine.refine import (  # noqa: E402
    CARRY_HIGH,
    CARRY_LOW,
    CLICK_FADE_MM,
    CLICK_RADIUS_MM,
    WARP_FRACTION,
    SlicePrompts,
    _keep_seam,
    box_region,
    click_changes,
    refine_on_slice,
)

AAL = "/usr/share/mricron/templates/aal.nii.gz"
RIGHT_HIPPOCAMPUS = 38
K0, K1 = 40, 92  # the slab: the right hippocampus spans k 44..83 of Colin27, so slices 84..91 lie beyond it


def default_bundle() -> Path:
    """The embedded default model's bundle folder."""
    from TextSegmentLib.resources import EMBEDDED_MODELS_DIR

    return next(EMBEDDED_MODELS_DIR.glob("*/model.json")).parent


@pytest.fixture(scope="module")
def seg():
    return Segmenter(str(default_bundle()), device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def slab():
    """(image, reference) of axial slices K0..K1-1 of Colin27 (real MRI, 1 mm); reference in (k, j, i) order."""
    image = sitk.ReadImage(CH2)[:, :, K0:K1]
    labels = sitk.GetArrayFromImage(sitk.ReadImage(AAL))[K0:K1]
    return image, labels == RIGHT_HIPPOCAMPUS


@pytest.fixture()
def segmented(seg, slab):
    """The text result (the slab's embeddings are encoded once, then cached for every test). Segmented once, without
    mirror averaging: these tests are about the rules that change a given segment, on a segment fixed here."""
    return seg.segment(slab[0], ["right hippocampus"], views=("axial",), mirror=False)


def changed_k(before: np.ndarray, after: np.ndarray) -> list:
    return sorted(np.flatnonzero((before != after).reshape(before.shape[0], -1).any(axis=1)).tolist())


def ref_box(ref: np.ndarray, k: int):
    """Voxel corners (i, j, k) of the reference's extent on axial slice k."""
    jj, ii = np.nonzero(ref[k])
    return (int(ii.min()), int(jj.min()), k), (int(ii.max()), int(jj.max()), k)


# --- the rules on one slice (no model) ----------------------------------------------------------------------------
def test_a_box_clips_the_prediction_and_a_box_on_nothing_still_marks_the_structure():
    pred = np.zeros((20, 20), bool)
    pred[2:18, 2:18] = True
    new = refine_on_slice(pred, pred, SlicePrompts(box_rc=(5.0, 6.0, 9.0, 12.0)))
    assert new.any() and not (new & ~box_region(new.shape, (5.0, 6.0, 9.0, 12.0))).any()
    empty = np.zeros_like(pred)
    taken = refine_on_slice(empty, empty, SlicePrompts(box_rc=(5.0, 6.0, 9.0, 12.0)))
    assert taken[7, 9] and not (taken & ~box_region(taken.shape, (5.0, 6.0, 9.0, 12.0))).any()


def test_clicks_add_the_predicted_region_and_remove_the_part_they_are_on():
    current = np.zeros((20, 20), bool)
    current[2:8, 2:8] = True  # the structure
    current[12:16, 12:16] = True  # a false positive
    pred = current.copy()
    pred[12:16, 12:16] = False  # the model, told "-" there, leaves it out
    pred[2:8, 9:12] = True  # and sees more structure beside the first
    minus = SlicePrompts(points_rc=np.array([[13.0, 13.0]]), labels=np.array([0]))
    new = refine_on_slice(pred, current, minus)
    assert not new[12:16, 12:16].any() and new[2:8, 2:8].all() and not new[2:8, 9:12].any()  # nothing else moves
    plus = SlicePrompts(points_rc=np.array([[4.0, 10.0]]), labels=np.array([1]))
    added = refine_on_slice(pred, current, plus)
    assert added[2:8, 9:12].all() and (added >= current).all()
    stubborn = refine_on_slice(current, current, minus)  # the model keeps the point: the engine removes around it
    assert not stubborn[13, 13] and stubborn[2:8, 2:8].all()


def test_the_seam_rule_drops_far_slices_that_agree_less_with_the_unchanged_neighbour():
    current = np.zeros((6, 10, 10), bool)
    current[:, 2:8, 2:8] = True
    good, bad = current[0].copy(), np.zeros((10, 10), bool)
    bad[2:4, 2:4] = True
    assert [k for k, _ in _keep_seam([(1, good), (2, bad)], current, +1)] == [1]
    assert [k for k, _ in _keep_seam([(1, good), (2, good)], current, +1)] == [1, 2]


# --- the rules on a real volume with the default model -----------------------------------------------------------
def test_a_box_bounds_the_segment_on_its_slice_and_the_run_follows_the_structure(seg, segmented, slab):
    res = segmented
    ref = slab[1]
    before = res.mask(0)
    k = 64 - K0
    lo, hi = ref_box(ref, k)
    lo, hi = (lo[0] + 3, lo[1] + 3, k), (hi[0] - 3, hi[1] - 3, k)  # tighter than the structure: the box rules
    seg.refine(res, 0, lo, box=(lo, hi))
    after = res.mask(0)
    inside = np.zeros(after.shape[1:], bool)
    inside[lo[1] - 1 : hi[1] + 2, lo[0] - 1 : hi[0] + 2] = True  # <= 1 voxel outside
    assert after[k].any() and not (after[k] & ~inside).any()
    touched = changed_k(before, after)
    extent = int(before.reshape(len(before), -1).any(axis=1).sum())
    reach = max(1, round(WARP_FRACTION * extent))
    assert k in touched and set(touched) <= set(range(k - reach, k + reach + 1))  # only the box's neighbourhood
    assert len(touched) > 1  # the correction carries beyond the box's slice
    for side in (+1, -1):  # the box is tighter than the segment: the neighbours shrink, less and less with distance
        run = [t for t in touched if (t - k) * side > 0]
        shrink = [1.0 - after[t].sum() / before[t].sum() for t in sorted(run, key=lambda t: abs(t - k))]
        assert all(after[t].sum() <= before[t].sum() for t in run)
        assert not shrink or shrink[-1] <= shrink[0]
    seg.undo(res)
    assert np.array_equal(res.mask(0), before)


def test_propagation_stops_where_the_structure_ends(seg, segmented, slab):
    res = segmented
    ref = slab[1]
    first, last = np.flatnonzero(ref.any(axis=(1, 2)))[[0, -1]]
    # the user's segment: the reference, plus nothing beyond it; a box near its top end
    k = int(last) - 3
    lo, hi = ref_box(ref, k)
    seg.refine(res, 0, lo, box=(lo, hi), current=ref)
    after = res.mask(0)
    touched = changed_k(ref, after)
    assert touched and min(touched) >= first and max(touched) <= last
    assert not after[last + 1 :].any() and not after[:first].any()  # slices beyond the structure stay empty


def test_a_minus_click_removes_the_part_it_is_on_and_a_plus_click_adds(seg, segmented, slab):
    res = segmented
    ref = slab[1]
    k = 60 - K0
    user = ref.copy()
    user[k, 40:48, 150:158] = True  # a false positive the user wants gone, far from the hippocampus
    seg.refine(res, 0, (153, 43, k), points=[(153, 43, k)], labels=[0], current=user)
    after = res.mask(0)
    assert not after[k, 43, 153] and not after[k, 40:48, 150:158].any()
    assert np.array_equal(after[k] | user[k], user[k])  # a - click only removes
    assert np.array_equal(after[k] & ref[k], ref[k])  # and not the structure
    seg.undo(res)
    assert np.array_equal(res.mask(0), user)

    missing = ref.copy()
    jj, ii = np.nonzero(ref[k])
    centre = (int(round(ii.mean())), int(round(jj.mean())), k)
    missing[:, :, : centre[0] + 1] = False  # the user's segment lacks the hippocampus's medial half
    seg.refine(res, 0, centre, points=[centre], labels=[1], current=missing)
    after = res.mask(0)
    assert after[k, centre[1], centre[0]] and (after[k] >= missing[k]).all()
    assert int(after[k].sum()) > int(missing[k].sum())


def test_current_is_where_refinement_starts_and_undo_restores_it_bit_exactly(seg, segmented, slab):
    res = segmented
    ref = slab[1]
    engine_mask = res.mask(0)
    user = ref.astype(np.uint8)  # a uint8 segment, as Slicer holds it, differing from the engine's
    user[5, 100:110, 100:110] = 1  # an edit far from the refined slices
    kept = user.copy()
    k = 62 - K0
    lo, hi = ref_box(ref, k)
    seg.refine(res, 0, lo, box=(lo, hi), current=user, max_propagation=3)
    assert np.array_equal(user, kept)  # the caller's array is not modified
    after = res.mask(0)
    touched = changed_k(user.astype(bool), after)
    assert touched and k in touched and set(touched) <= set(range(k - 3, k + 4))
    assert res.mask(0)[5, 100:110, 100:110].all()  # the user's edit is kept
    untouched = [t for t in range(len(after)) if t not in touched]
    assert np.array_equal(after[untouched], user.astype(bool)[untouched])  # only refined slices change
    labelmap = sitk.GetArrayFromImage(res.labelmap)
    assert np.array_equal(labelmap > 0, after)
    seg.undo(res)
    assert np.array_equal(res.mask(0), user.astype(bool))  # exactly the user's segment, not the engine's
    assert not np.array_equal(res.mask(0), engine_mask)
    with pytest.raises(Cancelled):  # a cancelled refinement leaves the segment as it was
        seg.refine(res, 0, lo, box=(lo, hi), current=engine_mask, cancel=lambda: True)
    assert np.array_equal(res.mask(0), user.astype(bool)) and not res._history
    with pytest.raises(InputError, match="shape"):
        seg.refine(res, 0, lo, box=(lo, hi), current=user[:-1])
    with pytest.raises(InputError, match="bool or integer"):
        seg.refine(res, 0, lo, box=(lo, hi), current=user.astype(np.float32))
    assert not res._history


def test_a_refinement_decodes_a_bounded_number_of_slices(seg, segmented, slab):
    res = segmented
    calls = []
    original = seg.model.decode
    seg.model.decode = lambda *a, **kw: calls.append(1) or original(*a, **kw)
    try:
        k = 64 - K0
        lo, hi = ref_box(slab[1], k)
        seg.refine(res, 0, lo, box=(lo, hi))
    finally:
        seg.model.decode = original
    extent = int(res.mask(0).reshape(K1 - K0, -1).any(axis=1).sum())
    assert len(calls) <= extent + 2  # at most the segment's extent, plus the slice that stops each direction


def test_a_click_that_changes_nothing_and_a_box_at_the_edge_touch_one_slice_at_most(seg, segmented, slab):
    res = segmented
    before = res.mask(0)
    k = 64 - K0
    seg.refine(res, 0, (2, 2, k), points=[(2, 2, k)], labels=[0])  # a - click off the segment: nothing to remove
    assert np.array_equal(res.mask(0), before)
    edge = (0, 0, k), (0, 0, k)  # a one-voxel box in the corner
    seg.refine(res, 0, edge[0], box=edge)
    assert changed_k(before, res.mask(0)) == [k] and res.mask(0)[k, 0, 0]
    assert not res.mask(0)[k, 2:, 2:].any()


# --- points act in 3D on the model's belief; a box's correction fades over its neighbours ------------------------
def test_points_push_the_boundary_through_themselves_fading_with_distance_and_gated_by_the_belief():
    shape = (40, 40, 40)
    spacing = (1.0, 1.0, 1.0)
    current = np.zeros(shape, bool)
    current[10:30, 10:30, 10:30] = True  # the segment: a 20 mm cube
    belief = np.full(shape, 0.5, np.float16)
    belief[:, :, 33:] = 0.0  # the model sees nothing beyond x = 33

    def apply_to(segment, changes):
        return np.stack([changes.get(k, segment[k]) for k in range(shape[0])])

    def apply(changes):
        return apply_to(current, changes)

    def prompts(row, col, label):
        return SlicePrompts(points_rc=np.array([[float(row), float(col)]]), labels=np.array([label]))

    # a + point 3 mm outside the face x = 29: that face moves out through it, fully there, less and less away
    grown = apply(click_changes(current, belief, 20, prompts(20, 32, 1), spacing))
    assert grown[20, 20, 30:33].all()  # through the point (to half a voxel beyond it)
    assert not grown[:, :, 35:].any() and not grown[14, 20, 33]  # not where the model sees nothing (but the ball)
    far = 20 - int(CLICK_FADE_MM)  # the fade reaches nothing at CLICK_FADE_MM
    assert not (grown[:, :, 30:] & ~current[:, :, 30:])[: far + 1].any()
    added = (grown & ~current).sum(axis=(0, 1))
    assert added[30] > added[31] > added[32] > 0  # less added the further out
    assert not (grown[:, :, :20] != current[:, :, :20]).any()  # the far side does not move
    # a - point 3 mm inside the face y = 10: that face moves in past it
    shrunk = apply(click_changes(current, belief, 20, prompts(13, 20, 0), spacing))
    assert not shrunk[20, 10:16, 20].any() and shrunk[20, 16:30, 20].all()  # past it (and its 2 mm ball)
    assert (shrunk <= current).all() and shrunk[:, 25:, :].sum() == current[:, 25:, :].sum()
    sure = belief.copy()
    sure[:] = 1.0  # the model is sure of every voxel: only the small ball around the point goes
    kept = apply(click_changes(current, sure, 20, prompts(13, 20, 0), spacing))
    assert not kept[20, 13, 20] and (current & ~kept).sum() <= 4 / 3 * np.pi * CLICK_RADIUS_MM**3 + 1
    # a - point on a small piece of segment within its reach removes all of it
    blob = current.copy()
    blob[20, 34:38, 34:38] = True
    assert not apply_to(blob, click_changes(blob, belief, 20, prompts(35, 35, 0), spacing))[:, 33:, 33:].any()
    # a + point on the segment and a - point off it change nothing; the reach along the normal is bounded
    assert click_changes(current, belief, 20, prompts(20, 20, 1), spacing) == {}
    assert click_changes(current, belief, 20, prompts(2, 2, 0), spacing) == {}
    bounded = click_changes(current, belief, 20, prompts(20, 32, 1), spacing, max_slices=1)
    assert set(bounded) <= {19, 20, 21}


def test_a_minus_click_on_a_false_positive_removes_it_on_every_slice_it_spans(seg, segmented, slab):
    res = segmented
    ref = slab[1]
    user = ref.copy()
    k = 60 - K0
    user[k - 2 : k + 3, 40:46, 150:156] = True  # a false positive over five slices, far from the hippocampus
    seg.refine(res, 0, (153, 43, k), points=[(153, 43, k)], labels=[0], current=user)
    after = res.mask(0)
    touched = changed_k(user, after)
    assert set(range(k - 2, k + 3)) <= set(touched)
    for t in touched:  # on every slice it touched, the segment is now closer to the reference (here: equal)
        assert np.array_equal(after[t], ref[t])
    seg.undo(res)
    assert np.array_equal(res.mask(0), user)


def test_a_box_around_the_structure_improves_every_slice_it_reaches_on_balance(seg, segmented, slab):
    """The user's box is the reference's extent on the slice where the segment is worst: the slices the correction
    reaches agree better with the reference, taken together, and the 3D Dice rises."""
    res = segmented
    ref = slab[1]
    before = res.mask(0)
    errors = (before != ref).reshape(len(ref), -1).sum(axis=1)
    k = int(np.argmax(np.where(ref.any(axis=(1, 2)), errors, -1)))
    lo, hi = ref_box(ref, k)
    seg.refine(res, 0, lo, box=(lo, hi))
    after = res.mask(0)
    touched = changed_k(before, after)
    assert len(touched) > 1
    wrong_before = int((before[touched] != ref[touched]).sum())
    wrong_after = int((after[touched] != ref[touched]).sum())
    assert wrong_after < wrong_before

    def dice(a, b):
        return 2.0 * (a & b).sum() / (a.sum() + b.sum())

    assert dice(after, ref) > dice(before, ref)
    seg.undo(res)


def test_a_box_carries_its_correction_only_where_the_model_was_unsure(seg, segmented, slab):
    """Beyond the box's slice, the carried correction adds no voxel the model's belief puts below ``CARRY_LOW`` and
    removes none it puts above ``CARRY_HIGH``; undo gives the segment back."""
    res = segmented
    ref = slab[1]
    before = res.mask(0)
    state = res.states[0]
    belief = res.volume.to_input_array(state.belief.crop(tuple((0, n) for n in state.mask.shape)))
    checked = 0
    for k in (15, 24, 32):  # three slices through the hippocampus, each box shifted 3 voxels off the reference
        lo, hi = ref_box(ref, k)
        shift = np.array([3, -3, 0])
        seg.refine(res, 0, lo, box=(tuple(np.array(lo) + shift), tuple(np.array(hi) + shift)))
        after = res.mask(0)
        touched = changed_k(before, after)
        assert k in touched
        for t in touched:
            if t == k:
                continue
            added, removed = after[t] & ~before[t], before[t] & ~after[t]
            assert (belief[t][added] >= CARRY_LOW - 1e-3).all() and (belief[t][removed] <= CARRY_HIGH + 1e-3).all()
            checked += int(added.sum() + removed.sum())
        seg.undo(res)
        assert np.array_equal(res.mask(0), before)
    assert checked > 0  # the correction did carry on


def test_points_fuzzed_only_add_or_only_remove_within_their_reach():
    """Random segments, beliefs, spacings and points, also at the volume's corners: a + point never removes, a -
    point never adds, nothing changes beyond ``max_slices`` or the fade's reach, and the slices keep their shape."""
    rng = np.random.default_rng(7)
    for trial in range(40):
        shape = tuple(int(n) for n in rng.integers(3, 24, size=3))
        current = rng.random(shape) > rng.choice([0.5, 0.9, 0.99])
        belief = rng.random(shape).astype(np.float16) if trial % 3 else None
        spacing = tuple(float(v) for v in rng.choice([0.5, 1.0, 2.5, 6.0], size=3))
        s = int(rng.integers(0, shape[0]))
        row, col = (float(rng.integers(-2, n + 2)) for n in shape[1:])  # off the slice too: clamped
        label = int(rng.integers(0, 2))
        limit = int(rng.integers(0, 4))
        changes = click_changes(current, belief, s, SlicePrompts(points_rc=np.array([[row, col]]),
                                labels=np.array([label])), spacing, max_slices=limit)  # fmt: skip
        for k, mask in changes.items():
            assert mask.shape == shape[1:] and mask.dtype == bool
            assert abs(k - s) <= min(limit, int(np.ceil(CLICK_FADE_MM / spacing[0])))
            assert (mask >= current[k]).all() if label == 1 else (mask <= current[k]).all()


def test_boxes_fuzzed_keep_the_slice_inside_the_box_and_warps_keep_their_shape():
    """Random slice masks and boxes (reversed corners, one pixel, partly or wholly off the slice): the refined slice
    lies inside the box, and carrying the correction gives a mask of the slice's shape."""
    from TextSegmentLib.engine.refine import _clamped, extent, warp_slice

    rng = np.random.default_rng(11)
    for _ in range(60):
        shape = tuple(int(n) for n in rng.integers(2, 30, size=2))
        current = rng.random(shape) > rng.choice([0.3, 0.8, 1.0])
        pred = rng.random(shape) > 0.5
        r0, r1 = (float(v) for v in rng.integers(-5, shape[0] + 5, size=2))
        c0, c1 = (float(v) for v in rng.integers(-5, shape[1] + 5, size=2))
        box = (min(r0, r1), min(c0, c1), max(r0, r1), max(c0, c1))
        new = refine_on_slice(pred, current, SlicePrompts(box_rc=box))
        assert new.shape == shape and not (new & ~box_region(shape, box)).any()
        src = extent(current)
        if src is not None:
            for weight in (0.0, 0.3, 1.0):
                moved = warp_slice(current, src, _clamped(src, box), weight)
                assert moved.shape == shape and moved.dtype == bool
            assert np.array_equal(warp_slice(current, src, src, 1.0), current)  # no correction: unchanged
