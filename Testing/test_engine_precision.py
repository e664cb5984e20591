"""Inference precision: the engine runs the image encoder and mask decoder in bfloat16 where the CPU computes it
natively (or when asked), on copies of the weights; the model's own weights, outputs and mode stay float32."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from TextSegmentLib.catalog import resolve_model
from TextSegmentLib.checkpoint import load_bundle
from TextSegmentLib.cli.main import main
from TextSegmentLib.demo import demo_volume
from TextSegmentLib.device import cpu_has_bf16, resolve_precision
from TextSegmentLib.engine import Segmenter

CPU = torch.device("cpu")


def test_resolve_precision_choices_and_bad_names():
    assert resolve_precision("float32", CPU) == torch.float32
    assert resolve_precision("bfloat16", CPU) == torch.bfloat16
    assert resolve_precision("auto", CPU) == (torch.bfloat16 if cpu_has_bf16() else torch.float32)
    assert resolve_precision(None, torch.device("meta")) == torch.float32  # only CPUs get bf16 by default
    with pytest.raises(ValueError, match="unknown precision 'half'.*auto, float32, bfloat16"):
        resolve_precision("half", CPU)


@pytest.fixture(scope="module")
def shipped():
    return load_bundle(resolve_model("default"), CPU).requires_grad_(False)


@pytest.fixture(scope="module")
def head():
    """The demo MNI152 T1 at 2 mm (a real head, small enough for a test)."""
    image = sitk.ReadImage(str(demo_volume()))
    size = [s // 2 for s in image.GetSize()]
    spacing = [sp * 2 for sp in image.GetSpacing()]
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), spacing,
                         image.GetDirection())  # fmt: skip


def _masks(model, image, precision, prompts):
    seg = Segmenter(model, device="cpu", precision=precision)
    result = seg.segment(image, prompts, views=("axial",))
    return sitk.GetArrayFromImage(result.labelmap), result


def test_bf16_masks_agree_with_float32_on_a_real_head(shipped, head):
    prompts = ["brain", "left caudate"]
    ref, res32 = _masks(shipped, head, "float32", prompts)
    low, res16 = _masks(shipped, head, "bfloat16", prompts)
    assert res32.info["precision"] == "float32" and res16.info["precision"] == "bfloat16"
    for label in (1, 2):
        a, b = ref == label, low == label
        assert a.sum() > 50, "the shipped model finds the structure at all"
        dice = 2 * (a & b).sum() / (a.sum() + b.sum())
        assert dice > 0.95, (prompts[label - 1], dice)
    # the model itself is untouched: float32 weights, float32 again outside the call
    assert all(p.dtype == torch.float32 for p in shipped.parameters())
    assert shipped.inference_dtype == torch.float32


def test_bf16_copies_follow_weight_changes(tiny_bundle):
    model = load_bundle(tiny_bundle, CPU).eval()
    emb = torch.randn(2, 32, 16, 16)
    model.inference_dtype = torch.bfloat16
    with torch.no_grad():
        before = model.decode(emb, text=["brain"]).masks
        state = model.state_dict()
        state["mask_decoder.hypernet.layers.2.bias"] += 1.0  # the mask logits move with this weight
        model.load_state_dict(state)
        after = model.decode(emb, text=["brain"]).masks
        model.inference_dtype = torch.float32
        exact = model.decode(emb, text=["brain"]).masks
    assert before.dtype == after.dtype == torch.float32
    assert not torch.allclose(before, after)
    changed = exact > -50  # pixels the decoder computed (absent slices are a constant)
    assert torch.allclose(after[changed], exact[changed], atol=0.1 * float(exact[changed].abs().max()) + 1e-3)


def test_autograd_runs_in_float32(tiny_bundle):
    model = load_bundle(tiny_bundle, CPU).train()
    model.inference_dtype = torch.bfloat16
    out = model(torch.rand(1, 3, 64, 64) * 255, text=["brain"])
    out.masks.sum().backward()
    assert model.mask_decoder.hypernet.layers[0].weight.grad.dtype == torch.float32


def test_cli_precision_flag(tiny_bundle, tmp_path):
    image = sitk.GetImageFromArray(np.random.default_rng(0).random((6, 24, 20)).astype(np.float32) * 100)
    src = tmp_path / "in.nii.gz"
    sitk.WriteImage(image, str(src))
    out = tmp_path / "out.nii.gz"
    args = ["segment", str(src), "--model", str(tiny_bundle), "--prompt", "brain", "--output", str(out)]
    assert main(args + ["--precision", "float32", "--no-progress"]) == 0
    assert json.loads(out.with_name("out.nii.gz.json").read_text())["precision"] == "float32"
    with pytest.raises(SystemExit) as exc:
        main(args + ["--precision", "half"])
    assert exc.value.code == 2


def test_embeddings_are_kept_in_the_decoding_dtype(shipped, head):
    """bfloat16 decoding keeps bf16 embeddings (its encoder's values, exactly; no conversion per decode), float32
    decoding fp16 ones; the two never share a cache entry, and the masks agree."""
    results = {}
    for precision, dtype in (("bfloat16", torch.bfloat16), ("float32", torch.float16)):
        seg = Segmenter(shipped, device="cpu", precision=precision)
        result = seg.segment(head, ["left putamen"], views=("axial",), mirror=False)  # one volume: one cache entry
        results[precision] = sitk.GetArrayFromImage(result.labelmap)
        entries = list(seg.cache._items.items())
        assert len(entries) == 1
        key, stored = entries[0]
        assert stored.tensor.dtype == dtype and key.endswith("|" + str(dtype).replace("torch.", ""))
        assert stored.have.any()
        seg.model.inference_dtype = torch.bfloat16
        with torch.no_grad():
            direct = seg.model.encode_image(seg.prepare(head).model_inputs([int(np.argmax(stored.have))], None))
        seg.model.inference_dtype = torch.float32
        if dtype == torch.bfloat16:  # the stored values are the encoder's own bf16 values, bit for bit
            assert torch.equal(stored.tensor[int(np.argmax(stored.have))], direct[0].to(torch.bfloat16))
    a, b = results["bfloat16"] > 0, results["float32"] > 0
    assert a.sum() > 50 and 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.95


def test_mr_range_is_computed_once_per_volume_content(shipped, head):
    seg = Segmenter(shipped, device="cpu")
    first = seg.prepare(head)
    low_high = first.mr_range()
    assert list(seg._mr_ranges.values()) == [low_high]
    # the same voxels stored another way round (flipped and permuted axes): the same canonical content, one entry
    array = sitk.GetArrayFromImage(head)
    flipped = sitk.GetImageFromArray(np.ascontiguousarray(array[:, ::-1].transpose(1, 0, 2)))
    flipped.SetSpacing([head.GetSpacing()[0], head.GetSpacing()[2], head.GetSpacing()[1]])
    d = np.array(head.GetDirection()).reshape(3, 3)
    flipped.SetDirection(tuple(np.stack([d[:, 0], d[:, 2], -d[:, 1]], axis=1).ravel()))
    other = seg.prepare(flipped)
    assert other.canonical_hash == first.canonical_hash
    assert other.mr_range() == low_high and len(seg._mr_ranges) == 1
    # other voxels: their own range
    brighter = sitk.Cast(head, sitk.sitkFloat32) * 2.0
    assert seg.prepare(brighter).mr_range() == pytest.approx((2 * low_high[0], 2 * low_high[1]), rel=1e-5)
    assert len(seg._mr_ranges) == 2
