"""Loss terms and metrics of the training folder."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # training/ is a folder of the repository, not installed

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from TextSegmentLib.model import DecoderOutput  # noqa: E402
from training.losses import hard_iou, segmentation_loss  # noqa: E402
from training.metrics import dice, hd95, nsd  # noqa: E402


def _out(logits, presence, iou):
    return DecoderOutput(logits[:, None], iou[:, None], presence[:, None])


def test_loss_terms():
    target = torch.zeros(2, 16, 16)
    target[0, 4:10, 4:10] = 1
    good = (target * 2 - 1) * 20  # confident and right; item 1 is a negative with an empty prediction
    out = _out(good, torch.tensor([10.0, -10.0]), hard_iou(good, target))
    terms = segmentation_loss(out, target, torch.tensor([1.0, 0.0]), {})
    assert terms["dice"] < 0.05 and terms["focal"] < 1e-6 and terms["presence"] < 1e-3 and terms["iou"] < 1e-6
    bad = -good
    worse = segmentation_loss(
        _out(bad, torch.tensor([-10.0, 10.0]), torch.ones(2)), target, torch.tensor([1.0, 0.0]), {}
    )
    assert all(worse[k] > terms[k] for k in ("total", "dice", "focal", "presence", "iou"))
    # Dice only counts positives: the negative item's (wrong) mask does not change it
    mixed = good.clone()
    mixed[1] = 20
    again = segmentation_loss(
        _out(mixed, torch.tensor([10.0, -10.0]), torch.ones(2)), target, torch.tensor([1.0, 0.0]), {}
    )
    assert torch.isclose(again["dice"], terms["dice"]) and again["focal"] > terms["focal"]


def test_metrics():
    a = np.zeros((20, 20), bool)
    a[5:15, 5:15] = True
    b = np.roll(a, 1, axis=1)
    assert dice(a, a) == 1.0 and 0.85 < dice(a, b) < 0.95
    assert nsd(a, b, (1.0, 1.0), 2.0) == pytest.approx(1.0)
    assert nsd(a, np.roll(a, 5, axis=1), (1.0, 1.0), 2.0) < 0.8
    assert hd95(a, np.roll(a, 3, axis=0), (2.0, 1.0)) == pytest.approx(6.0)
    assert np.isnan(hd95(a, np.zeros_like(a), (1.0, 1.0)))
