"""Segment options are checked in one place: the request validation of the application layer and the engine refuse
the same options with the same message."""

import pytest

from TextSegmentLib.app import RequestError, check_options
from TextSegmentLib.engine.options import resolve_options

BAD = [
    ({"fill_holes": None}, "fill_holes must be true or false"),
    ({"use_cache": 1}, "use_cache must be true or false"),
    ({"mask_threshold": 1.5}, "mask_threshold must be a number from 0 to 1"),
    ({"presence_threshold": None}, "presence_threshold must be a number from 0 to 1"),
    ({"vocabulary_gate": True}, "vocabulary_gate must be a number from 0 to 1"),
    ({"min_component_ml": float("inf")}, "min_component_ml must be a finite number"),
    ({"min_slices": 0}, "min_slices must be a whole number"),
    ({"slice_stride": 2.5}, "slice_stride must be a whole number"),
    ({"slice_axis": "oblique"}, "slice_axis must be one of"),
    ({"views": ["axial", "diagonal"]}, "slice_axis must be one of"),
    ({"ct_window": "liverish"}, "CT window 'liverish' is unknown"),
    ({"ct_window": (40, 0)}, "CT window width must be positive"),
    ({"modality": "PET"}, "modality 'PET' must be 'CT' or 'MR'"),
    ({"prompt_text": "typed"}, "prompt_text must be 'matched' or 'raw'"),
    ({"view_weights": {"axial": -1}}, "view weight of axial must be a finite number"),
    ({"treshold": 0.3}, "unknown segment options"),
]


@pytest.mark.parametrize("options, message", BAD, ids=[m for _, m in BAD])
def test_the_application_and_the_engine_refuse_alike(options, message):
    with pytest.raises(RequestError, match=message):
        check_options(options)
    with pytest.raises((TypeError, ValueError), match=message):
        resolve_options(options, ("axial",), {})


def test_good_options_pass_both_and_are_normalised():
    options = {"ct_window": [40, 400], "largest_only": None, "mask_threshold": None, "views": ("coronal", "axial")}
    assert check_options(options)["ct_window"] == (40.0, 400.0)
    resolved = resolve_options(options, ("axial",), {})
    assert resolved["ct_window"] == (40.0, 400.0) and resolved["views"] == ("coronal", "axial")
    assert check_options({"ct_window": "auto"})["ct_window"] is None
