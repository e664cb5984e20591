"""Segmenter.precompute: every slice encoded ahead of the first prompt, the same results, cancel keeps what was done,
and nothing is encoded that the cache could not keep."""

import logging
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_volumes import brain_crop  # noqa: E402
from test_engine_views import PLANES, three_plane_segmenter  # noqa: E402

from TextSegmentLib.engine import Cancelled  # noqa: E402

OPTS = dict(presence_threshold=0.0, min_component_ml=0.0, min_slices=1, fill_holes=False)


@pytest.fixture(scope="module")
def brain():
    return brain_crop((22, 26, 16))


def test_precompute_encodes_every_slice_once_and_changes_no_result(tiny_bundle, brain):
    seg = three_plane_segmenter(tiny_bundle)
    volume = seg.prepare(brain)
    sizes = {p: volume.view(p).num_slices for p in PLANES}
    reports = []
    assert seg.precompute(brain, progress=lambda f, m: reports.append((f, m))) == sizes
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("coronal" in m for _, m in reports)
    assert seg.precompute(brain) == {p: 0 for p in PLANES}  # all kept: nothing left to encode
    assert seg.precompute(brain, views=("sagittal",)) == {"sagittal": 0}
    hits = seg.cache.hits
    after = seg.segment(brain, ["brain", "skull"], **OPTS)
    assert seg.cache.hits > hits
    fresh = three_plane_segmenter(tiny_bundle).segment(brain, ["brain", "skull"], **OPTS)
    assert after.mask(0).any()
    for i in range(2):
        assert np.array_equal(after.mask(i), fresh.mask(i))


def test_a_cancelled_precompute_keeps_the_slices_it_encoded(tiny_bundle, brain):
    seg = three_plane_segmenter(tiny_bundle)
    seg.batcher.batch_size = 4
    batches = []  # progress is reported after each batch, cancel checked before each: two batches get through

    with pytest.raises(Cancelled):
        seg.precompute(brain, progress=lambda f, m: batches.append(f), cancel=lambda: len(batches) >= 2)
    left = seg.precompute(brain)
    volume = seg.prepare(brain)
    assert sum(left.values()) == sum(volume.view(p).num_slices for p in PLANES) - 8


def test_precompute_skips_a_plane_the_cache_cannot_keep(tiny_bundle, brain, caplog):
    seg = three_plane_segmenter(tiny_bundle)
    seg.cache.limit_bytes = 1024  # smaller than any plane's embeddings
    with caplog.at_level(logging.WARNING):
        assert seg.precompute(brain) == {p: 0 for p in PLANES}
    assert "cache limit" in caplog.text
    assert seg.segment(brain, ["brain"], **OPTS).mask(0).any()  # prompts still work, encoding what they need


def test_precompute_refuses_bad_options_by_name(tiny_bundle, brain):
    seg = three_plane_segmenter(tiny_bundle)
    with pytest.raises(ValueError, match="views|axial"):
        seg.precompute(brain, views=("diagonal",))
    with pytest.raises(ValueError, match="window"):
        seg.precompute(brain, ct_window="no-such-window")


def test_a_ct_is_encoded_in_the_window_most_of_the_vocabulary_uses(tiny_bundle):
    import SimpleITK as sitk

    seg = three_plane_segmenter(tiny_bundle)
    vocabulary = [{"name": n, "ct_window": w} for n, w in (("skull", "bone"), ("bone", "bone"), ("brain", "brain"))]
    seg.model.card = dict(seg.model.card, vocabulary=vocabulary)
    array = np.random.default_rng(3).normal(40, 300, (12, 20, 18)).astype(np.int16)
    ct = sitk.GetImageFromArray(array)
    ct.SetSpacing((2.0, 2.0, 3.0))
    sizes = {"axial": 12, "coronal": 20, "sagittal": 18}
    assert seg.precompute(ct, modality="CT") == sizes  # in the bone window: two of the three entries use it
    assert seg.precompute(ct, modality="CT", ct_window="bone") == {p: 0 for p in PLANES}
    assert seg.precompute(ct, modality="CT", ct_window="brain") == sizes


def test_one_changed_voxel_is_another_volume(tiny_bundle, brain):
    """The cache key covers every voxel: the same volume hits it, one voxel changed (anywhere) misses it."""
    import SimpleITK as sitk

    seg = three_plane_segmenter(tiny_bundle)
    sizes = seg.precompute(brain, views=("axial",))
    assert seg.precompute(sitk.Image(brain), views=("axial",)) == {"axial": 0}  # a copy: the same content
    for index in [(0, 0, 0), (21, 25, 15), (7, 13, 9)]:
        changed = sitk.Image(brain)
        changed[index] = changed[index] + 1
        assert seg.precompute(changed, views=("axial",)) == sizes
