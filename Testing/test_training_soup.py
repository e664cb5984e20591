"""training.soup: the weighted mean of bundles' weights as a new, loadable bundle; refusals by name."""

import json

import pytest
import torch

from TextSegmentLib.checkpoint import load_bundle, save_bundle
from TextSegmentLib.model import build_model
from training.soup import main, soup

CFG = {"image_size": 64, "embed_dim": 32, "decoder_heads": 4, "decoder_mlp_dim": 64}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("soup")
    out = []
    for n in range(3):
        torch.manual_seed(n)
        card = {"name": "tiny", "version": f"0.{n + 1}.0", "vocabulary": [{"name": "brain", "mask_threshold": 0.4}]}
        out.append(save_bundle(build_model(CFG), root / f"v{n + 1}", card))
    return out


def _state(path):
    return {k: v for k, v in load_bundle(path).state_dict().items() if v.is_floating_point()}


def test_the_soup_is_the_weighted_mean_and_keeps_the_last_card(bundles, tmp_path):
    out = soup(bundles, tmp_path / "s", weights=[1, 1, 2], version="0.4.0")
    states = [_state(b) for b in bundles]
    mixed = _state(out)
    assert set(mixed) == set(states[0])
    for key, value in mixed.items():
        expected = (states[0][key] + states[1][key] + 2 * states[2][key]) / 4
        assert torch.allclose(value, expected, atol=2e-3, rtol=1e-3), key
    card = json.loads((out / "model.json").read_text())
    assert card["version"] == "0.4.0" and card["weights_dtype"] == "float16"
    assert card["vocabulary"][0]["mask_threshold"] == 0.4
    assert [round(x["weight"], 3) for x in card["training_data"]["soup"]] == [0.25, 0.25, 0.5]
    assert [x["bundle"] for x in card["training_data"]["soup"]] == ["tiny-v0.1.0", "tiny-v0.2.0", "tiny-v0.3.0"]
    assert [x["folder"] for x in card["training_data"]["soup"]] == [b.name for b in bundles]
    before = [(b / "model.safetensors").read_bytes() for b in bundles]
    assert [(b / "model.safetensors").read_bytes() for b in bundles] == before  # ingredients untouched


def test_refusals_name_the_problem(bundles, tmp_path, capsys):
    torch.manual_seed(0)
    other = save_bundle(build_model(dict(CFG, embed_dim=64)), tmp_path / "wide", {"name": "wide"})
    with pytest.raises(ValueError, match="another architecture"):
        soup([bundles[0], other], tmp_path / "x")
    with pytest.raises(ValueError, match="at least two"):
        soup(bundles[:1], tmp_path / "x")
    with pytest.raises(ValueError, match="one non-negative weight per bundle"):
        soup(bundles[:2], tmp_path / "x", weights=[1, -1])
    with pytest.raises(ValueError, match="replace its ingredient"):
        soup(bundles[:2], bundles[1])
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit) as exc:
        main([str(bundles[0]), str(bundles[1]), "--out", str(bundles[0])])
    assert exc.value.code == 2 and "replace its ingredient" in capsys.readouterr().err
    assert load_bundle(bundles[0]).card["version"] == "0.1.0"
