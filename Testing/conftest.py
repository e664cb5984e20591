"""Shared pytest fixtures: a tiny real model bundle (random weights) for every test that needs a model."""

from pathlib import Path

import pytest

#: the smallest model config that exercises every part of the architecture
TINY_MODEL_CONFIG = {"image_size": 64, "embed_dim": 32, "decoder_heads": 4, "decoder_mlp_dim": 64}
#: a small vocabulary written into the tiny bundle's model card
TINY_VOCABULARY = [
    {"name": "brain", "synonyms": ["encephalon"], "region": "brain"},
    {"name": "hippocampus", "synonyms": ["hippocampal formation"], "lateral": True, "region": "brain"},
    {"name": "lung", "synonyms": ["pulmonary parenchyma"], "lateral": True, "region": "lung"},
    {"name": "liver", "region": "soft_tissue"},
]


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """Folder of a saved tiny bundle (``TINY_MODEL_CONFIG``, seed 0, vocabulary ``TINY_VOCABULARY``)."""
    import torch

    from TextSegmentLib.checkpoint import save_bundle
    from TextSegmentLib.model import build_model

    torch.manual_seed(0)
    model = build_model(TINY_MODEL_CONFIG)
    card = {"name": "tiny-test", "version": "0.0.1", "vocabulary": TINY_VOCABULARY}
    return save_bundle(model, tmp_path_factory.mktemp("bundles") / "tiny", card)


@pytest.fixture(scope="session")
def present_bundle(tmp_path_factory) -> Path:
    """The tiny model with its presence head biased to "present": every prompt gets a non-empty segment, so overlaps,
    layers and hidden-segment warnings happen through the command line too (random weights, real bundle)."""
    import torch

    from TextSegmentLib.checkpoint import save_bundle
    from TextSegmentLib.model import build_model

    torch.manual_seed(0)
    model = build_model(TINY_MODEL_CONFIG)
    with torch.no_grad():
        model.mask_decoder.presence_head.layers[-1].bias.fill_(8.0)
    card = {"name": "tiny-present", "version": "0.0.1", "vocabulary": TINY_VOCABULARY}
    return save_bundle(model, tmp_path_factory.mktemp("bundles") / "present", card)
