"""Batching: cancel between batches, out-of-memory back-off (halve, then CPU), errors that are not OOM."""

import pytest
import torch

from TextSegmentLib.engine import Cancelled
from TextSegmentLib.engine.batching import Batcher


class FakeGpuModel(torch.nn.Module):
    """Reports a 'cuda' parameter device until moved to the CPU."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.on_gpu = True

    def to(self, device):
        self.on_gpu = str(device) != "cpu"
        return self

    def parameters(self, recurse=True):
        class P:
            device = torch.device("cuda" if self.on_gpu else "cpu")

        yield P()


def test_oom_halves_the_batch_then_falls_back_to_cpu(caplog):
    model = FakeGpuModel()
    batcher = Batcher(8, model)
    seen = []

    def fn(batch):
        if model.on_gpu and (len(batch) > 2 or seen):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        seen.append(list(batch))
        return [b * 10 for b in batch]

    with caplog.at_level("WARNING"):
        out = batcher.run(fn, list(range(7)), None, None, "test")
    assert out == [b * 10 for b in range(7)]
    assert not model.on_gpu and batcher.batch_size == 1
    assert any("CPU" in r.message for r in caplog.records) and any("batch size 4" in r.message for r in caplog.records)


def test_other_errors_and_cpu_oom_are_raised():
    batcher = Batcher(4)

    def boom(batch):
        raise ValueError("bad")

    with pytest.raises(ValueError):
        batcher.run(boom, [1, 2, 3], None, None, "x")
    batcher = Batcher(1, None)
    with pytest.raises(RuntimeError, match="out of memory"):
        batcher.run(lambda b: (_ for _ in ()).throw(RuntimeError("out of memory")), [1], None, None, "x")


def test_cancel_and_progress():
    progress = []
    batcher = Batcher(2)
    with pytest.raises(Cancelled):
        batcher.run(lambda b: b, list(range(10)), lambda f, m: progress.append(f), lambda: len(progress) >= 2, "x")
    assert progress == [0.2, 0.4]
    with pytest.raises(ValueError):
        Batcher(0)


def test_a_training_model_keeps_its_mode(tiny_bundle):
    import numpy as np

    from TextSegmentLib.checkpoint import load_bundle
    from TextSegmentLib.engine import Segmenter, VolumeInput

    model = load_bundle(tiny_bundle).train()
    seg = Segmenter(model=model, device="cpu")
    modes = []
    original = model.encode_image
    model.encode_image = lambda x: modes.append(model.image_encoder.training) or original(x)
    vol = VolumeInput(np.random.rand(3, 16, 16).astype(np.float32), (1, 1, 1), (0, 0, 0), np.eye(3).ravel())
    seg.segment(vol, ["brain"])
    assert modes and not any(modes)  # eval (BatchNorm statistics frozen) while segmenting
    assert model.training and model.image_encoder.training  # the trainer's mode is back
