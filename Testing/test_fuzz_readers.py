"""The catalog and model-card readers fuzzed with wrong types and deep nesting: every hand-edited file is either read
or refused with the reader's own error (CatalogError, BundleError) naming the file; never another exception, never a
half-read file. Real files, the tiny real bundle."""
# ruff: noqa: F811  (pytest fixtures imported from conftest_http are parameters of the tests)

import copy
import json
import shutil
from pathlib import Path

import pytest
from conftest_http import entry, home, tiny, write_catalog  # noqa: F401
from fuzz_helpers import cli

#: values of every JSON type, nested ones included
WRONG = [None, 0, -1, 1.5, True, "", "x", [], [1], {}, {"a": {}}, [[[[]]]], 1e308, -(2**70)]
DEEP = "[" * 100000 + "]" * 100000


def _entries(tiny):
    return entry("tiny-v1.0.0", tiny["zip"], ["https://example.invalid/tiny.zip"], sample_data=[], deprecated=False,
                 min_textsegment_version="0.1.0")  # fmt: skip


def test_catalog_entries_with_every_field_of_every_wrong_type(home, tiny):
    from TextSegmentLib.catalog import CatalogError, list_models, load_catalog

    good = _entries(tiny)
    path = home.parent / "Resources" / "models.json"
    tried = refused = 0
    for key in sorted(good) + ["archive", "embedded", "weights_sha256"]:
        for value in WRONG:
            raw = dict(copy.deepcopy(good), **{key: value})
            write_catalog(path, [raw], default=None)
            tried += 1
            try:
                catalog = load_catalog(path)
            except CatalogError as exc:
                assert str(path) in str(exc), exc
                refused += 1
                continue
            list_models(catalog)  # what was read can be used
            assert catalog.entries[0].id == "tiny-v1.0.0"
    assert refused > tried // 2  # most wrong types are refused; the rest are values of the right type


@pytest.mark.parametrize("default", WRONG[1:])
def test_a_catalog_default_of_a_wrong_type(home, tiny, default, capsys):
    path = write_catalog(home.parent / "Resources" / "models.json", [_entries(tiny)])
    data = json.loads(path.read_text())
    data["default"] = default
    path.write_text(json.dumps(data))
    code, _, err = cli(capsys, "models", "list")
    assert code in (0, 2) and "Traceback" not in err, err


@pytest.mark.parametrize("text", [DEEP, '{"models": ' + DEEP + "}", '{"models": [' + "{" * 50000 + "}" * 50000 + "]}"])
def test_a_catalog_nested_deeply(home, text, capsys):
    path = home.parent / "Resources" / "models.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    code, _, err = cli(capsys, "models", "list")
    assert code == 2 and "catalog" in err and "Traceback" not in err, err


@pytest.fixture(scope="module")
def card_bundle(tiny_bundle, tmp_path_factory) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("fuzz") / "bundle"))


def _paths(card, prefix=()):
    """Every key path of a card, nested objects included (lists are replaced whole)."""
    for key, value in card.items():
        yield prefix + (key,)
        if isinstance(value, dict):
            yield from _paths(value, prefix + (key,))


def test_model_cards_with_every_field_of_every_wrong_type(card_bundle):
    from TextSegmentLib.checkpoint import BundleError, check_bundle

    card_file = card_bundle / "model.json"
    good = json.loads(card_file.read_text())
    refused = 0
    try:
        for path in list(_paths(good)):
            for value in (None, -1, 1.5, True, "x", [1], {"a": {}}, 1e308):
                card = copy.deepcopy(good)
                node = card
                for key in path[:-1]:
                    node = node[key]
                node[path[-1]] = value
                card_file.write_text(json.dumps(card))
                try:
                    check_bundle(card_bundle)
                except BundleError as exc:
                    refused += 1
                    assert "Traceback" not in str(exc)
    finally:
        card_file.write_text(json.dumps(good))
    assert refused > 0


@pytest.mark.parametrize("text", [DEEP, '{"name": ' + DEEP + "}", "{" * 60000 + "}" * 60000])
def test_a_model_card_nested_deeply(card_bundle, text):
    from TextSegmentLib.checkpoint import BundleError, check_bundle

    card_file = card_bundle / "model.json"
    good = card_file.read_text()
    card_file.write_text(text)
    try:
        with pytest.raises(BundleError, match="model.json"):
            check_bundle(card_bundle)
    finally:
        card_file.write_text(good)


#: hand edits of the fields the engine reads while segmenting: each is refused when the bundle is checked, or the
#: model segments with it
EDITS = [
    ("input", "slice_axis", "diagonal"), ("input", "planes", ["axial", 5]), ("input", "planes", "axial"),
    ("input", "mr_percentiles", [99, 1]), ("input", "mr_percentiles", "0.5,99.5"), ("input", "ct_windows", [40, 400]),
    ("input", "ct_windows", {"soft_tissue": "wide"}), ("input", "default_ct_window", 3),
    ("vocabulary", None, [5]), ("vocabulary", None, [{"name": 3}]), ("vocabulary", None, [{"name": "brain",
    "synonyms": "encephalon"}]), ("vocabulary", None, [{"name": "brain", "mask_threshold": "high"}]),
    ("vocabulary", None, [{"name": "brain", "mask_threshold": 7}]), ("vocabulary", None, [{"name": "brain",
    "largest_only": "yes"}]), ("vocabulary", None, ["brain", {"name": "lung", "lateral": "both"}]),
]  # fmt: skip


def test_hand_edited_engine_fields_are_refused_or_work(card_bundle, tmp_path):
    from fuzz_helpers import small_volume

    from TextSegmentLib.checkpoint import BundleError
    from TextSegmentLib.engine import Segmenter

    scan = small_volume(tmp_path / "in.nii.gz")
    card_file = card_bundle / "model.json"
    good = json.loads(card_file.read_text())
    outcomes = []
    try:
        for section, key, value in EDITS:
            card = copy.deepcopy(good)
            if key is None:
                card[section] = value
            else:
                card[section][key] = value
            card_file.write_text(json.dumps(card))
            try:
                segmenter = Segmenter(str(card_bundle), device="cpu")
            except BundleError as exc:
                assert "model.json" in str(exc), exc
                outcomes.append("refused")
                continue
            result = segmenter.segment(str(scan), ["brain"], presence_threshold=0.0)
            outcomes.append(f"segmented {result.segments[0].found}")
    finally:
        card_file.write_text(json.dumps(good))
    assert outcomes.count("refused") >= len(EDITS) - 2, outcomes
