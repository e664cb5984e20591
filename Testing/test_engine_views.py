"""Three-view engine: fusion of axial, coronal and sagittal, refinement in any plane with undo, orientation
invariance, and the cropped resampling that maps model-resolution logits back to the volume."""

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import TINY_MODEL_CONFIG  # noqa: E402
from engine_volumes import brain_crop, reoriented  # noqa: E402

from TextSegmentLib.checkpoint import load_bundle  # noqa: E402
from TextSegmentLib.engine import InputError, Segmenter  # noqa: E402
from TextSegmentLib.engine.decode import VolumeDecode  # noqa: E402
from TextSegmentLib.engine.fusion import box_edge_factors, fuse, view_box, view_probabilities  # noqa: E402
from TextSegmentLib.engine.volume import PreparedVolume, slice_view  # noqa: E402

PLANES = ["axial", "coronal", "sagittal"]


@pytest.fixture(scope="module")
def brain():
    return brain_crop((22, 26, 16))


def three_plane_segmenter(bundle) -> Segmenter:
    model = load_bundle(Path(bundle), torch.device("cpu"))
    model.card = dict(model.card, input=dict(model.card.get("input", {}), planes=PLANES))
    return Segmenter(model, device="cpu", batch_size=8)


@pytest.fixture()
def seg3(tiny_bundle):
    return three_plane_segmenter(tiny_bundle)


def test_views_default_to_the_cards_planes(tiny_bundle, seg3, brain):
    old = Segmenter(str(tiny_bundle), device="cpu")
    assert old.refine_planes() == ("axial",)  # a card without planes: axial only
    assert old.segment(brain, ["brain"]).views == ("axial",)
    assert seg3.refine_planes() == tuple(PLANES)
    res = seg3.segment(brain, ["brain"], presence_threshold=0.0)
    assert res.views == tuple(PLANES)
    assert res.to_dict()["views"] == PLANES
    assert seg3.segment(brain, ["brain"], views=("coronal",)).views == ("coronal",)


def test_fusion_is_the_weighted_mean_of_the_views(seg3, brain):
    """The fused mask equals thresholding the weighted mean of the single views' full-volume probabilities."""
    opts = dict(presence_threshold=0.0, min_component_ml=0.0, min_slices=1, fill_holes=False, slice_stride=1)
    fused = seg3.segment(brain, ["brain"], **opts).mask(0)
    volume = seg3.prepare(brain)
    probs = {}
    for plane in PLANES:
        res = seg3.segment(brain, ["brain"], views=(plane,), mask_threshold=0.5, **opts)
        view = volume.view(plane)
        dec = VolumeDecode(*_decode_all(seg3, view))
        full = ((0, volume.canonical.shape[0]), (0, volume.canonical.shape[1]), (0, volume.canonical.shape[2]))
        probs[plane] = view_probabilities(view, dec, full, -np.inf)
        single = volume.to_input_array(probs[plane] >= 0.5)
        np.testing.assert_array_equal(single, res.mask(0))  # one view alone: its own probabilities thresholded
    weights = {"axial": 0.4, "coronal": 0.4, "sagittal": 0.2}
    # a crop this small lies within EDGE_MM of every edge: each view's weight follows the field of view
    factors = box_edge_factors(volume, PLANES, full)
    assert all(float(f.min()) < 1.0 for f in factors.values())
    expected = volume.to_input_array(fuse(probs, weights, factors) >= 0.5)
    np.testing.assert_array_equal(expected, fused)


def _decode_all(seg, view):
    from TextSegmentLib.engine.multiview import assemble, decode_slices
    from TextSegmentLib.engine.segmenter import _eval_mode

    emb = seg.store.embeddings(seg.model, view, None)
    with _eval_mode(seg.model, seg.dtype):  # as the segmenter decodes: eval, no autograd, its precision
        found = decode_slices(
            seg.model, emb, seg.model.encode_text(["brain"]), seg.batcher, -np.inf, list(range(view.num_slices))
        )
    d = assemble(found, view.num_slices, seg.model.config.image_size)
    return d.logits, d.presence, d.iou


def test_cropped_resampling_equals_full_upsampling():
    """view_probabilities inside a box == the full-slice bilinear upsampling (SliceFit.to_slices) cropped."""
    img = sitk.GetImageFromArray(np.random.rand(9, 23, 17).astype(np.float32))
    img.SetSpacing((0.9, 1.1, 2.0))
    volume = PreparedVolume(img, {}, image_size=32)
    rng = np.random.default_rng(0)
    for plane in PLANES:
        view = volume.view(plane)
        logits = torch.as_tensor(rng.normal(0, 4, (view.num_slices, 32, 32)), dtype=torch.float16)
        presence = torch.full((view.num_slices,), 5.0)
        presence[1] = -5.0  # an absent slice contributes nothing
        dec = VolumeDecode(logits, presence, torch.zeros(view.num_slices))
        box = ((2, 8), (3, 20), (4, 15))
        block = view_probabilities(view, dec, box, 0.0)
        full = torch.sigmoid(view.fit.to_slices(logits.float())).numpy()
        full[1] = 0.0
        canon = np.ascontiguousarray(np.asarray(_from_view(full, plane)))
        np.testing.assert_allclose(block, canon[2:8, 3:20, 4:15], atol=1e-5)


def _from_view(stack, plane):
    from TextSegmentLib.engine.volume import from_slice_view

    return from_slice_view(stack, plane)


def test_view_box_covers_what_the_view_finds():
    img = sitk.GetImageFromArray(np.random.rand(12, 20, 16).astype(np.float32))
    volume = PreparedVolume(img, {}, image_size=32)
    view = volume.view("coronal")
    logits = torch.full((view.num_slices, 32, 32), -20.0)
    logits[5, 10:14, 12:20] = 5.0  # something on coronal slice 5
    presence = torch.full((view.num_slices,), -5.0)
    presence[5] = 5.0
    box = view_box(view, VolumeDecode(logits, presence, torch.zeros(view.num_slices)), 0.0)
    (s0, s1), (p0, p1), (l0, l1) = box
    assert p0 <= 5 < p1 and p1 - p0 <= 1 + 2 * 2  # only around slice 5, with the margin
    assert s1 - s0 < volume.canonical.shape[0] and l1 - l0 < volume.canonical.shape[2]


@pytest.mark.parametrize("plane", ["coronal", "sagittal"])
def test_refine_in_any_plane_changes_only_that_planes_slices_and_undo_restores(seg3, brain, plane):
    res = seg3.segment(brain, ["brain", "left hippocampus"], presence_threshold=0.0, min_component_ml=0.0)
    before = [res.mask(0).copy(), res.mask(1).copy()]
    labels_before = sitk.GetArrayFromImage(res.labelmap)
    size = brain.GetSize()
    # the input is stored RAS-flipped LPS; pick a voxel in the middle and draw around it in the chosen plane
    centre = [s // 2 for s in size]
    lo = [max(0, c - 6) for c in centre]
    hi = [min(s - 1, c + 6) for c, s in zip(centre, size)]
    seg3.refine(res, 0, tuple(centre), box=(tuple(lo), tuple(hi)), plane=plane, max_propagation=0)
    volume = res.volume
    normal_axis = {"axial": 0, "coronal": 1, "sagittal": 2}[plane]  # canonical (S, P, L) array axis
    canon_before = _canonical(volume, before[0])
    canon_after = _canonical(volume, res.mask(0))
    diff = canon_before != canon_after
    changed = np.flatnonzero(diff.any(axis=tuple(a for a in range(3) if a != normal_axis)))
    expected = int(round(volume.canonical_to_view(volume.index_to_canonical(centre), plane)[0]))
    assert set(changed.tolist()) <= {expected}
    np.testing.assert_array_equal(res.mask(1), before[1])  # other prompts untouched
    assert res.segments[0].refinements == 1
    seg3.undo(res)
    np.testing.assert_array_equal(res.mask(0), before[0])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(res.labelmap), labels_before)


def _canonical(volume, input_array):
    from TextSegmentLib.imaging.orientation import to_canonical

    return np.asarray(to_canonical(input_array, volume.reorientation))


def test_refine_on_a_plane_the_model_was_not_trained_on_says_which_views_to_use(tiny_bundle, brain):
    seg = Segmenter(str(tiny_bundle), device="cpu")
    res = seg.segment(brain, ["brain"])
    with pytest.raises(InputError, match="axial"):
        seg.refine(res, 0, 5, box=((2, 2, 5), (20, 20, 5)), plane="coronal")
    with pytest.raises(InputError, match="prompt_index"):
        seg.refine(res, 3, 5, box=((2, 2, 5), (20, 20, 5)))


def test_refine_propagates_along_the_planes_normal(seg3, brain):
    res = seg3.segment(brain, ["brain"], presence_threshold=0.0, min_component_ml=0.0)
    before = _canonical(res.volume, res.mask(0))
    seg3.refine(res, 0, 11, box=(3, 3, 20, 12), plane="sagittal", max_propagation=2)
    after = _canonical(res.volume, res.mask(0))
    changed = np.flatnonzero((before != after).any(axis=(0, 1)))  # sagittal slices = canonical L index
    assert changed.size and changed.max() - changed.min() <= 4


@pytest.mark.parametrize(
    "perm,flips", [((0, 1, 2), (True, True, False)), ((2, 0, 1), (False, True, True)), ((1, 2, 0), (True, False, True))]
)
def test_three_views_are_voxel_identical_in_every_storage_orientation(seg3, brain, perm, flips):
    opts = dict(presence_threshold=0.0, min_component_ml=0.0)
    ref = seg3.segment(brain, ["brain", "left hippocampus"], **opts)
    moved = reoriented(brain, perm, flips)
    res = seg3.segment(moved, ["brain", "left hippocampus"], **opts)
    back = sitk.Resample(res.labelmap, brain, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(ref.labelmap))


def test_embeddings_are_cached_per_plane(seg3, brain):
    encoded = []
    original = seg3.model.encode_image
    seg3.model.encode_image = lambda x: encoded.append(len(x)) or original(x)
    seg3.segment(brain, ["brain"], presence_threshold=0.0)  # everything present: every slice is decoded
    first = sum(encoded)
    volume = seg3.prepare(brain)
    assert first == sum(volume.view(p).num_slices for p in PLANES)  # every slice of every plane, once
    seg3.segment(brain, ["left hippocampus"], presence_threshold=0.0)
    assert sum(encoded) == first  # a further prompt decodes from the cache
    seg3.segment(brain, ["brain"], views=("sagittal",))
    assert sum(encoded) == first


def test_only_the_slices_decoded_are_encoded(seg3, brain):
    """A first prompt encodes the coarse slices and those across the target only; later calls fill in the rest."""
    encoded = []
    original = seg3.model.encode_image
    seg3.model.encode_image = lambda x: encoded.append(len(x)) or original(x)
    sizes = [seg3.prepare(brain).view(p).num_slices for p in PLANES]
    total = sum(sizes)
    seg3.segment(brain, ["brain"], presence_threshold=1.0, slice_stride=4)  # nothing present: coarse pass only
    # ... of the axial and coronal planes: the sagittal one (0.2) is decoded only where they found something
    assert sum(encoded) == sum(len(range(0, n, 4)) + (1 if (n - 1) % 4 else 0) for n in sizes[:2]) < total
    seg3.segment(brain, ["brain"], presence_threshold=0.0)
    assert sum(encoded) == total  # the rest, each slice once


def test_slice_view_is_writable_through_to_the_canonical_array():
    a = np.zeros((3, 4, 5), bool)
    slice_view(a, "coronal")[1] = True
    assert a[:, 1, :].all() and a.sum() == 15


def test_fine_pass_decodes_at_the_model_pixel_size_and_interpolates_between():
    from TextSegmentLib.engine.multiview import fine_stride, interpolate

    img = sitk.GetImageFromArray(np.random.rand(10, 60, 40).astype(np.float32))
    img.SetSpacing((4.0, 0.5, 4.0))  # coronal slices 0.5 mm apart, shown with 160 mm / 32 = 5 mm pixels
    volume = PreparedVolume(img, {}, image_size=32)
    assert fine_stride(volume.view("coronal")) == 10
    assert fine_stride(volume.view("axial")) == 1  # axial slices are 4 mm apart: every one is decoded
    zero, ten = torch.zeros(32, 32, dtype=torch.float16), torch.full((32, 32), 10.0, dtype=torch.float16)
    found = {0: (zero, torch.tensor(0.0), torch.tensor(0.0)), 10: (ten, torch.tensor(10.0), torch.tensor(1.0))}
    interpolate(found, 0, 11)
    assert sorted(found) == list(range(11))
    assert float(found[4][0][0, 0]) == 4.0 and float(found[4][1]) == 4.0


def test_a_region_only_one_plane_finds_is_left_out_of_the_box(monkeypatch):
    """With weights 0.4/0.4/0.2 a region only one plane finds cannot reach 0.5 after fusion: it is not decoded
    further nor resampled; where two planes agree it is. Near an edge that cuts the other planes' slices (this
    20-voxel volume lies within EDGE_MM of every edge) the lone plane may carry the mask, and its region is kept."""
    from TextSegmentLib.engine import fusion
    from TextSegmentLib.engine.multiview import target_box

    img = sitk.GetImageFromArray(np.random.rand(10, 12, 20).astype(np.float32))  # canonical (S, P, L)
    volume = PreparedVolume(img, {}, image_size=32)

    def decode(plane, k, rows, cols):
        view = volume.view(plane)
        logits = torch.full((view.num_slices, 32, 32), -20.0)
        y0, x0 = view.fit.to_model(np.array([rows[0]]), np.array([cols[0]]))
        y1, x1 = view.fit.to_model(np.array([rows[1]]), np.array([cols[1]]))
        logits[k, int(y0[0]) : int(y1[0]) + 1, int(x0[0]) : int(x1[0]) + 1] = 5.0
        presence = torch.full((view.num_slices,), -5.0)
        presence[k] = 5.0
        return VolumeDecode(logits, presence, torch.zeros(view.num_slices))

    weights = {"axial": 0.4, "coronal": 0.4, "sagittal": 0.2}
    decodes = {
        "axial": decode("axial", 4, (3, 5), (2, 4)),  # S 4, P 3-5, L 2-4
        "coronal": decode("coronal", 4, (10 - 1 - 4, 10 - 1 - 4), (2, 4)),  # P 4, S 4, L 2-4
        "sagittal": decode("sagittal", 16, (2, 7), (2, 9)),  # L 16 only: far from the others
    }
    (s0, s1), (p0, p1), (l0, l1) = target_box(volume, decodes, 0.0, weights)
    assert l1 > 16  # near the L edge the sagittal plane sees its slices whole: its finding is kept
    monkeypatch.setattr(fusion, "EDGE_MM", 1e-6)  # far from every edge (the plain weighted mean)
    (s0, s1), (p0, p1), (l0, l1) = target_box(volume, decodes, 0.0, weights)
    assert l1 <= 8 and s0 <= 4 < s1 and p0 <= 4 < p1  # the sagittal plane's lone finding is not in it
    alone = {"sagittal": decodes["sagittal"]}
    assert target_box(volume, alone, 0.0, weights) is not None  # one plane segmented: its own box
    # axial and sagittal alone: renormalised, axial weighs 0.67 and passes on its own, sagittal (0.33) does not
    two = target_box(volume, {"axial": decodes["axial"], "sagittal": decodes["sagittal"]}, 0.0, weights)
    assert two is not None and two[2][1] <= 8


def test_fused_views_decode_every_second_model_pixel_along_each_normal(seg3):
    """With three planes the fine pass decodes one slice per two model pixels of each plane (the other planes resolve
    that axis) and interpolates in between; ``fine_pixels=1`` decodes every slice."""
    from TextSegmentLib.engine import multiview

    image = brain_crop((96, 96, 24))  # every plane shows 96 mm on 64 pixels: 1.5 mm pixels, 1 mm slices
    volume = seg3.prepare(image)
    assert [multiview.fine_stride(volume.view(p)) for p in PLANES] == [1, 1, 1]
    assert [multiview.fine_stride(volume.view(p), 2) for p in PLANES] == [3, 3, 3]
    decoded = []
    original = multiview.decode_slices

    def counting(model, emb, text, batcher, gate, indices, *args, **kwargs):
        if not kwargs.get("probe"):  # the coarse pass only probes; count the exact decodes
            decoded.append(len(indices))
        return original(model, emb, text, batcher, gate, indices, *args, **kwargs)

    opts = dict(presence_threshold=0.0, slice_stride=8, min_component_ml=0.0, min_slices=1)
    counts = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(multiview, "decode_slices", counting)
        for name, extra in (("default", {}), ("every pixel", {"fine_pixels": 1})):
            decoded.clear()
            res = seg3.segment(image, ["brain"], **opts, **extra)
            counts[name] = sum(decoded)
            assert res.segments[0].found
    assert counts["every pixel"] == 24 + 96 + 96  # everything present: every slice of every plane, once
    coarse = len(range(0, 24, 8)) + 1 + 2 * (len(range(0, 96, 8)) + 1)
    assert counts["default"] <= coarse + len(range(0, 24, 3)) + 2 * len(range(0, 96, 3)) + 3  # + every third slice
    assert counts["default"] < 0.6 * counts["every pixel"]
    with pytest.raises(Exception, match="fine_pixels"):
        seg3.segment(image, ["brain"], fine_pixels=0)


def test_a_decoder_that_reads_the_image_gets_it_from_the_encoding_not_recomputed(monkeypatch):
    """With ``detail_channels`` the decoder reads the slice images; they are kept when the slice is encoded, so a
    further prompt does not window and resize them again, and the result equals the uncached path."""
    from TextSegmentLib.engine.volume import PlaneView
    from TextSegmentLib.model import build_model

    torch.manual_seed(0)
    model = build_model({**TINY_MODEL_CONFIG, "detail_channels": 8}).eval()
    with torch.no_grad():  # the skips start at zero; give them weight so the image matters
        for proj in (model.mask_decoder.detail.half_proj, model.mask_decoder.detail.full_proj):
            proj.weight.normal_(0, 0.5)
    seg = Segmenter(model, device="cpu")
    image = brain_crop()
    opts = dict(presence_threshold=0.0, views=("axial", "coronal"))
    seg.segment(image, ["brain"], **opts)
    calls = []
    original = PlaneView.model_inputs
    monkeypatch.setattr(PlaneView, "model_inputs", lambda self, *a: calls.append(1) or original(self, *a))
    cached = seg.segment(image, ["brain"], **opts)
    assert not calls  # everything the further prompt decodes was encoded, with its images, by the first one
    fresh = Segmenter(model, device="cpu").segment(image, ["brain"], use_cache=False, **opts)
    np.testing.assert_array_equal(cached.mask(0), fresh.mask(0))
    volume = seg.prepare(image)
    emb = seg.store.embeddings(model, volume.view("coronal"), None)
    idx = [0, 3, 5]
    assert torch.equal(emb.images(idx), original(volume.view("coronal"), idx, None))


def test_the_lightest_plane_is_decoded_only_where_the_others_found_something():
    """A voxel needs planes whose weights reach the mask threshold; with 0.4/0.4/0.2 every such set holds the axial
    or the coronal plane, so the sagittal coarse pass only covers their boxes (along its normal, a coarse step
    beyond). When the lightest plane alone can reach the threshold, or with fewer planes, every plane is decoded."""
    from TextSegmentLib.engine.multiview import _coarse, _lightest_needed_elsewhere

    weights = {"axial": 0.4, "coronal": 0.4, "sagittal": 0.2}
    assert _lightest_needed_elsewhere(PLANES, weights, 0.5) == "sagittal"
    assert _lightest_needed_elsewhere(PLANES, {p: 1.0 for p in PLANES}, 0.5) == "axial"  # any pair: any plane
    assert _lightest_needed_elsewhere(PLANES, {p: 1.0 for p in PLANES}, 0.3) is None  # one plane is enough
    assert _lightest_needed_elsewhere(PLANES, weights, 0.2) is None
    assert _lightest_needed_elsewhere(["axial", "sagittal"], weights, 0.5) is None
    assert _coarse(100, 6)[-2:] == [96, 99] and _coarse(100, 6)[0] == 0
    assert _coarse(100, 6, (30, 40)) == [30, 36, 42]


def test_fine_slices_upscale_only_the_box(seg3, brain):
    """The fine pass upscales only the part of each slice that the fused box covers (``crop``), and the fusion is
    done in the region decoded finely: identical to the full-slice decoding there."""
    from TextSegmentLib.engine import multiview

    crops = []
    original = multiview.decode_slices

    def recording(model, emb, text, batcher, gate, indices, *args, **kwargs):
        crops.append(args[4] if len(args) > 4 else kwargs.get("crop"))
        return original(model, emb, text, batcher, gate, indices, *args, **kwargs)

    opts = dict(presence_threshold=0.0, min_component_ml=0.0, min_slices=1, fill_holes=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(multiview, "decode_slices", recording)
        res = seg3.segment(brain, ["brain"], **opts)
    assert res.segments[0].found
    size = seg3.model.config.image_size
    fine = [c for c in crops if c is not None]
    assert fine and all(0 <= y0 < y1 <= size and 0 <= x0 < x1 <= size for y0, y1, x0, x1 in fine)
    assert any((y1 - y0) * (x1 - x0) < size * size for y0, y1, x0, x1 in fine)  # the letterbox is left out
    assert crops[0] is None  # the coarse pass decodes whole slices (it looks for the target)


def test_a_shell_in_the_vocabulary_keeps_its_holes(seg3, brain):
    """A structure the card marks ``"fill_holes": false`` (the skull encloses the brain) is not filled slice by slice;
    others are, unless the caller turns filling off."""
    from TextSegmentLib.engine import queries as engine  # where each part's views are fused

    seen = []
    original = engine.belief_mask

    def recording(volume, belief, opts):
        seen.append(opts["fill_holes"])
        return original(volume, belief, opts)

    vocab = [{"name": "skull", "fill_holes": False}, {"name": "brain"}]
    seg3.model.card = dict(seg3.model.card, vocabulary=vocab)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "belief_mask", recording)
        seg3.segment(brain, ["skull", "brain"], vocabulary_gate=0.0)
        seg3.segment(brain, ["brain"], vocabulary_gate=0.0, fill_holes=False)
    assert seen == [False, True, False]


def test_the_fine_box_is_where_the_planes_findings_agree_not_where_their_boxes_overlap(monkeypatch):
    """Two planes that each find the target and something else elsewhere have bounding boxes that overlap far beyond
    the target; the estimate from their coarse slices keeps the fine box around where they agree (plus a step).
    (Weights as far from every edge: this 4 cm volume would otherwise be within EDGE_MM of all of them.)"""
    from TextSegmentLib.engine import fusion
    from TextSegmentLib.engine.estimate import estimate_box

    monkeypatch.setattr(fusion, "EDGE_MM", 1e-6)
    from TextSegmentLib.engine.multiview import target_box

    img = sitk.GetImageFromArray(np.random.rand(40, 48, 44).astype(np.float32))  # canonical (S, P, L), 1 mm
    volume = PreparedVolume(img, {}, image_size=64)
    cube = ((15, 25), (20, 30), (18, 28))
    blobs = {"axial": ((30, 36), (36, 44), (2, 8)), "coronal": ((2, 8), (36, 44), (30, 40))}

    def decode(plane):
        view = volume.view(plane)
        logits = torch.full((view.num_slices, 64, 64), -20.0)
        presence = torch.full((view.num_slices,), -5.0)
        for region in (cube, blobs.get(plane)):
            if region is None:
                continue
            canonical = np.zeros(volume.canonical.shape, bool)
            canonical[tuple(slice(lo, hi) for lo, hi in region)] = True
            stack = slice_view(canonical, plane)
            for k in np.flatnonzero(stack.any(axis=(1, 2))):
                rows, cols = np.nonzero(stack[k])
                ys, xs = view.fit.to_model(rows.astype(float), cols.astype(float))
                logits[k, int(ys.min()) : int(ys.max()) + 1, int(xs.min()) : int(xs.max()) + 1] = 5.0
                presence[k] = 5.0
        return VolumeDecode(logits, presence, torch.zeros(view.num_slices))

    weights = {"axial": 0.4, "coronal": 0.4, "sagittal": 0.2}
    decodes = {p: decode(p) for p in PLANES}
    probed = {p: list(range(0, volume.view(p).num_slices, 2)) for p in PLANES}
    loose = target_box(volume, decodes, 0.0, weights)
    assert loose[1][1] >= 40  # the bounding boxes overlap out to the blobs' P
    tight = estimate_box(volume, decodes, probed, 0.0, weights, 0.5, {p: 2 for p in PLANES}, loose)
    for (lo, hi), (clo, chi), (llo, lhi) in zip(tight, cube, loose):
        assert llo <= lo <= clo and chi <= hi <= lhi  # inside the loose box, around the cube
    assert tight[1][1] <= cube[1][1] + 2 + 2 + 2  # P: the cube, a step and 2 voxels (and a grid cell)


def test_a_structure_is_cut_at_the_threshold_its_card_entry_calibrated(present_bundle, brain):
    """A vocabulary entry's ``mask_threshold`` (written by training.calibrate) cuts that structure's fused
    probabilities unless the call sets a threshold itself; other structures keep 0.5; the report says which."""
    seg = three_plane_segmenter(present_bundle)
    seg.model.card = dict(seg.model.card, vocabulary=[{"name": "brain", "mask_threshold": 0.3}, {"name": "liver"}])
    card_cut = seg.segment(brain, ["brain", "liver"], vocabulary_gate=0.0)
    assert [s.mask_threshold for s in card_cut.segments] == [0.3, 0.5]
    raw = seg.segment(brain, ["outline the whole brain for the atrophy study"], vocabulary_gate=0.0, prompt_text="raw")
    assert raw.segments[0].mask_threshold == 0.3  # the structure the prompt names, also when the model reads it raw
    assert card_cut.to_dict()["segments"][0]["mask_threshold"] == 0.3
    called_low = seg.segment(brain, ["brain"], vocabulary_gate=0.0, mask_threshold=0.3)
    called_high = seg.segment(brain, ["brain"], vocabulary_gate=0.0, mask_threshold=0.5)
    assert called_high.segments[0].mask_threshold == 0.5
    assert np.array_equal(card_cut.mask(0), called_low.mask(0))
    assert card_cut.mask(0).sum() > called_high.mask(0).sum()  # a lower cut of the same probabilities: more voxels
    seg.model.card = dict(seg.model.card, vocabulary=[{"name": "brain"}, {"name": "liver"}])
    assert np.array_equal(seg.segment(brain, ["brain"], vocabulary_gate=0.0).mask(0), called_high.mask(0))


def test_a_structure_the_card_marks_one_piece_keeps_its_largest_component(present_bundle, brain):
    """A vocabulary entry's ``"largest_only": true`` (written by training.calibrate) keeps that structure's largest
    3D piece unless the call says otherwise; other structures keep every piece; each report says which."""
    seg = three_plane_segmenter(present_bundle)
    seg.model.card = dict(seg.model.card, vocabulary=[{"name": "brain", "largest_only": True}, {"name": "liver"}])
    loose = {"vocabulary_gate": 0.0, "mask_threshold": 0.3, "min_component_fraction": 0.0, "min_slices": 1}
    by_card = seg.segment(brain, ["brain", "liver"], **loose)
    assert [s.largest_only for s in by_card.segments] == [True, False]
    assert by_card.to_dict()["segments"][0]["largest_only"] is True
    forced = seg.segment(brain, ["brain", "liver"], largest_only=True, **loose)
    kept = seg.segment(brain, ["brain", "liver"], largest_only=False, **loose)
    assert [s.largest_only for s in forced.segments] == [True, True]
    assert [s.largest_only for s in kept.segments] == [False, False]
    assert np.array_equal(by_card.mask(0), forced.mask(0)) and np.array_equal(by_card.mask(1), kept.mask(1))
    labels, count = ndimage.label(by_card.mask(0), structure=np.ones((3, 3, 3)))
    assert count == 1 and by_card.mask(0).sum() > 0
    assert not (by_card.mask(0) & ~kept.mask(0)).any()  # one of the pieces the call that keeps all of them has
    with pytest.raises(ValueError, match="largest_only"):
        seg.segment(brain, ["brain"], largest_only="yes")


@pytest.mark.parametrize("bad", [1.5, -0.1, "0.4", True])
def test_a_mask_threshold_outside_0_to_1_is_refused(seg3, brain, bad):
    with pytest.raises(ValueError, match="mask_threshold"):
        seg3.segment(brain, ["brain"], mask_threshold=bad)
