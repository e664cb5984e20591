"""The promptable slice model: shapes for every prompt combination, padding, caching, one-call equivalence."""

import itertools

import pytest
import torch

from TextSegmentLib.device import resolve_device
from TextSegmentLib.model import ModelConfig, build_model

SMALL = {"image_size": 64, "embed_dim": 32, "decoder_heads": 4, "decoder_mlp_dim": 64}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(SMALL).eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.rand(3, 3, 64, 64, generator=g) * 255


def test_default_model_is_tinyvit_class_and_small():
    torch.manual_seed(0)
    m = build_model()
    enc = sum(p.numel() for p in m.image_encoder.parameters())
    total = sum(p.numel() for p in m.parameters())
    assert enc <= 10_000_000 and total <= 10_000_000
    with torch.no_grad():
        emb = m.encode_image(torch.zeros(1, 3, 256, 256))
    assert emb.shape == (1, 256, 64, 64)


def test_embed_dim_configurable():
    with torch.no_grad():
        emb = build_model({**SMALL, "embed_dim": 48, "decoder_heads": 4}).encode_image(torch.zeros(1, 3, 64, 64))
    assert emb.shape == (1, 48, 16, 16)


def test_real_text_encoder_gives_384d(model):
    emb = model.encode_text(["left hippocampus", "the liver"])
    assert emb.sentence.shape == (2, 384)
    assert emb.tokens.shape[-1] == 384
    assert emb.mask.dtype == torch.bool and emb.mask.sum(1).tolist()[0] >= 3
    assert torch.allclose(emb.sentence.norm(dim=1), torch.ones(2), atol=1e-5)
    # different prompts give different embeddings, the same prompt the same (cached) one
    assert not torch.allclose(emb.sentence[0], emb.sentence[1])
    again = model.encode_text(["left hippocampus"])
    assert torch.equal(again.sentence[0], emb.sentence[0])


PROMPTS = ["text", "box", "points", "mask"]


@pytest.mark.parametrize("combo", [c for r in range(0, 5) for c in itertools.combinations(PROMPTS, r)])
def test_every_prompt_combination(model, images, combo):
    kwargs = {}
    if "text" in combo:
        kwargs["text"] = ["left putamen"]
    if "box" in combo:
        kwargs["boxes"] = torch.tensor([[5.0, 6.0, 40.0, 50.0]])
    if "points" in combo:
        kwargs["points"] = torch.tensor([[[20.0, 20.0], [30.0, 10.0], [0.0, 0.0]]])
        kwargs["point_labels"] = torch.tensor([[1, 0, -1]])
    if "mask" in combo:
        kwargs["mask_inputs"] = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        out = model(images, **kwargs)
    assert out.masks.shape == (3, 1, 64, 64)
    assert out.iou.shape == (3, 1) and out.presence.shape == (3, 1)
    assert torch.isfinite(out.masks).all() and torch.isfinite(out.presence).all()


def test_prompts_change_the_output(model, images):
    with torch.no_grad():
        emb = model.encode_image(images[:1])
        a = model.decode(emb, text=["left putamen"]).masks
        b = model.decode(emb, text=["right thalamus"]).masks
        c = model.decode(emb, text=["left putamen"], boxes=torch.tensor([[5.0, 6.0, 40.0, 50.0]])).masks
    assert not torch.allclose(a, b) and not torch.allclose(a, c)


def test_padding_does_not_leak(model, images):
    short = "caudate"
    long = "the large grey matter structure deep in the left cerebral hemisphere next to the lateral ventricle " * 3
    with torch.no_grad():
        emb = model.encode_image(images[:2])
        alone = model.decode(emb[:1], text=[short])
        batched = model.decode(emb, text=[short, long])
    assert model.encode_text([short, long]).mask[0].sum() < model.encode_text([short, long]).mask[1].sum()
    torch.testing.assert_close(batched.masks[:1], alone.masks, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(batched.presence[:1], alone.presence, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched.iou[:1], alone.iou, atol=1e-5, rtol=1e-5)


def test_padded_points_and_absent_boxes_are_ignored(model, images):
    box = torch.tensor([[5.0, 6.0, 40.0, 50.0]])
    with torch.no_grad():
        emb = model.encode_image(images[:1])
        plain = model.decode(emb, text=["brain"])
        padded = model.decode(
            emb,
            text=["brain"],
            boxes=torch.tensor([[-1.0, -1.0, -1.0, -1.0]]),
            points=torch.tensor([[[3.0, 3.0]]]),
            point_labels=torch.tensor([[-1]]),
        )
        boxed = model.decode(emb, text=["brain"], boxes=box)
    torch.testing.assert_close(padded.masks, plain.masks, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(boxed.masks, plain.masks)


def test_decode_of_cached_embeddings_equals_forward(model, images):
    kwargs = {"text": ["left hippocampus"], "boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0]])}
    with torch.no_grad():
        once = model(images, **kwargs)
        emb = model.encode_image(images)
        first = model.decode(emb, **kwargs)
        second = model.decode(emb, **kwargs)
        other = model.decode(emb, text=["thalamus"])
    torch.testing.assert_close(first.masks, once.masks)
    torch.testing.assert_close(second.masks, first.masks)
    assert other.masks.shape == first.masks.shape


def test_one_slice_many_prompts_broadcast(model, images):
    with torch.no_grad():
        emb = model.encode_image(images[:1])
        out = model.decode(emb, text=["left putamen", "right putamen", "brain"])
        single = model.decode(emb, text=["right putamen"])
    assert out.masks.shape == (3, 1, 64, 64)
    torch.testing.assert_close(out.masks[1:2], single.masks, atol=1e-4, rtol=1e-4)


def test_mismatched_batches_are_refused(model, images):
    with torch.no_grad():
        emb = model.encode_image(images[:2])
        with pytest.raises(ValueError, match="batch sizes"):
            model.decode(emb, text=["a", "b", "c"])
    with pytest.raises(ValueError, match="images must be"):
        model.encode_image(torch.zeros(1, 3, 32, 32))


def test_presence_gating_skips_only_absent_items(model, images):
    with torch.no_grad():
        emb = model.encode_image(images)
        full = model.decode(emb, text=["brain"])
        threshold = float(full.presence.median())
        gated = model.decode(emb, text=["brain"], presence_threshold=threshold)
    keep = full.presence[:, 0] >= threshold
    assert keep.any() and (~keep).any()
    torch.testing.assert_close(gated.masks[keep], full.masks[keep], atol=1e-4, rtol=1e-4)
    assert (gated.masks[~keep] < -10).all()


def test_slice_context_flag_is_recorded():
    cfg = ModelConfig.from_dict({**SMALL, "slice_context": True})
    assert cfg.slice_context and build_model(cfg).config.slice_context


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="image_size"):
        ModelConfig.from_dict({"image_size": 100})
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"imagesize": 256})


def test_device_selection():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_gradients_flow_to_every_trainable_part(model, images):
    m = build_model(SMALL).train()
    out = m(images[:2], text=["left putamen", None], boxes=torch.tensor([[5.0, 6.0, 40.0, 50.0], [-1, -1, -1, -1]]))
    (out.masks.mean() + out.iou.mean() + out.presence.mean()).backward()
    for name in ("image_encoder", "mask_decoder", "sentence_proj", "token_proj"):
        grads = [p.grad for p in getattr(m, name).parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name


@pytest.mark.parametrize("channels_last", [False, True])
def test_layernorm2d_is_a_layernorm_over_channels(channels_last):
    from TextSegmentLib.model.layers import LayerNorm2d

    torch.manual_seed(0)
    norm = LayerNorm2d(6)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 6, 5, 7) * 3 + 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    mean = x.mean(1, keepdim=True)
    ref = (x - mean) / torch.sqrt(x.var(1, unbiased=False, keepdim=True) + norm.eps)
    ref = ref * norm.weight[:, None, None] + norm.bias[:, None, None]
    out = norm(x)
    assert out.shape == x.shape
    assert torch.allclose(out, ref, atol=1e-5)
    (g_out,) = torch.autograd.grad(out.square().sum(), x)
    (g_ref,) = torch.autograd.grad(ref.square().sum(), x)
    assert torch.allclose(g_out, g_ref, atol=1e-4)


@pytest.mark.parametrize("side", ["few queries", "few keys"])
@pytest.mark.parametrize("padded", [False, True])
def test_attention_between_few_and_many_tokens_equals_the_plain_one(side, padded):
    """At inference the decoder's attention between a few prompt tokens and a thousand image tokens folds the image
    tokens' projections into the prompt side: the same result as the plain attention (which training uses)."""
    from TextSegmentLib.model.layers import Attention

    torch.manual_seed(0)
    attn = Attention(128, 4, 2)
    few, many = torch.randn(3, 7, 128), torch.randn(3, 1024, 128)
    q, k, v = (few, many, many * 0.5 + 1) if side == "few queries" else (many, few, few * 0.5 + 1)
    mask = torch.ones(3, k.shape[1], dtype=torch.bool)
    if padded:
        mask[:, -2:] = False
    with torch.enable_grad():
        plain = attn(q, k, v, mask if padded else None)
    with torch.no_grad():
        fast = attn(q, k, v, mask if padded else None)
        direct = (attn._few_queries if side == "few queries" else attn._few_keys)(q, k, v, mask if padded else None)
    assert torch.equal(fast, direct)  # the fast path is the one taken without autograd
    assert torch.allclose(fast, plain, atol=1e-5, rtol=1e-4)
    # a residual is added inside the last matmul (many queries) or after it: the same as adding it to the output
    residual = torch.randn(q.shape) * 3
    with torch.enable_grad():
        plain_r = attn(q, k, v, mask if padded else None, residual=residual)
    with torch.no_grad():
        fast_r = attn(q, k, v, mask if padded else None, residual=residual.clone())
    assert torch.allclose(plain_r, plain + residual, atol=1e-6)
    assert torch.allclose(fast_r, plain + residual, atol=1e-5, rtol=1e-4)
    if padded:  # padded keys get no weight: changing them changes nothing
        k2, v2 = k.clone(), v.clone()
        k2[:, -2:] += 100.0
        v2[:, -2:] -= 100.0
        with torch.no_grad():
            assert torch.allclose(attn(q, k2, v2, mask), fast, atol=1e-5)


@pytest.mark.parametrize("crop", [(10, 50, 30, 61), (0, 64, 0, 64), (50, 64, 0, 9), (0, 3, 60, 64)])
def test_a_decoded_crop_equals_the_whole_mask_there(images, crop):
    """Upscaling only a crop (with the image's detail path) gives the whole mask's logits inside the widened crop
    and the absent logit outside; presence and IoU do not depend on it."""
    from TextSegmentLib.model.mask_decoder import ABSENT_LOGIT, align_crop

    torch.manual_seed(0)
    m = build_model({**SMALL, "detail_channels": 8}).eval()
    with torch.no_grad():
        for proj in (m.mask_decoder.detail.half_proj, m.mask_decoder.detail.full_proj):
            proj.weight.normal_(0, 0.5)  # the detail path starts at zero: make it count
        emb = m.encode_image(images)
        full = m.decode(emb, text=["left putamen"] * 3, images=images)
        part = m.decode(emb, text=["left putamen"] * 3, images=images, crop=crop)
    y0, y1, x0, x1 = align_crop(crop, 64)
    assert y0 <= crop[0] and y1 >= min(crop[1], 64) and x0 <= crop[2] and x1 >= min(crop[3], 64)
    assert y0 % 8 == 0 and x0 % 8 == 0 and y1 - y0 >= 8
    assert torch.allclose(part.masks[..., y0:y1, x0:x1], full.masks[..., y0:y1, x0:x1], atol=1e-5)
    outside = part.masks.clone()
    outside[..., y0:y1, x0:x1] = ABSENT_LOGIT
    assert torch.all(outside == ABSENT_LOGIT)
    assert torch.equal(part.presence, full.presence) and torch.equal(part.iou, full.iou)


def test_a_probe_is_the_whole_mask_at_one_pixel_of_each_block(images):
    """``probe`` computes the mask at the pixels (4i + 2, 4j + 2) only and repeats each over its 4 x 4 block: the same
    logits as the whole mask there (with the image's detail path)."""
    torch.manual_seed(0)
    m = build_model({**SMALL, "detail_channels": 8}).eval()
    with torch.no_grad():
        for proj in (m.mask_decoder.detail.half_proj, m.mask_decoder.detail.full_proj):
            proj.weight.normal_(0, 0.5)
        emb = m.encode_image(images)
        full = m.decode(emb, text=["left putamen"] * 3, images=images)
        probe = m.decode(emb, text=["left putamen"] * 3, images=images, probe=True)
        plain = build_model(SMALL).eval()  # no detail path
        plain_full = plain.decode(plain.encode_image(images), text=["x"] * 3)
        plain_probe = plain.decode(plain.encode_image(images), text=["x"] * 3, probe=True)
    assert torch.allclose(probe.masks[..., 2::4, 2::4], full.masks[..., 2::4, 2::4], atol=1e-5)
    assert torch.equal(probe.masks[..., 0::4, 1::4], probe.masks[..., 2::4, 2::4])  # one value per block
    assert not torch.allclose(probe.masks, full.masks, atol=1e-3)  # elsewhere it is not the mask
    assert torch.allclose(plain_probe.masks[..., 2::4, 2::4], plain_full.masks[..., 2::4, 2::4], atol=1e-5)
    assert torch.equal(probe.presence, full.presence)


def test_batch_norm_is_folded_into_the_convolution_only_in_eval_mode():
    from TextSegmentLib.model.image_encoder import ConvBN

    torch.manual_seed(3)
    block = ConvBN(6, 10, 3, stride=2)
    with torch.no_grad():  # statistics and affine terms far from the identity, as after training
        block[1].running_mean.uniform_(-2, 2)
        block[1].running_var.uniform_(0.1, 4)
        block[1].weight.uniform_(0.5, 2)
        block[1].bias.uniform_(-1, 1)
    x = torch.randn(2, 6, 17, 17)
    block.eval()
    unfused = block[1](block[0](x))
    torch.testing.assert_close(block(x), unfused, atol=1e-5, rtol=1e-5)
    block.train()  # training normalises with the batch's statistics and updates the running ones
    before = block[1].running_mean.clone()
    out = block(x)
    assert not torch.equal(block[1].running_mean, before)
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), block[1].bias.detach(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("channels_last", [False, True])
def test_gelu2d_equals_gelu_and_keeps_the_layout(channels_last):
    from TextSegmentLib.model.layers import gelu2d

    x = torch.randn(2, 5, 7, 3)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = gelu2d(x)
    assert torch.equal(y, torch.nn.functional.gelu(x.contiguous()))
    torch.testing.assert_close(y, torch.nn.functional.gelu(x), atol=1e-6, rtol=0)
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_dense_positional_encoding_is_kept_and_follows_the_weights():
    enc = build_model({"image_size": 64, "embed_dim": 32, "decoder_heads": 4, "decoder_mlp_dim": 64}).prompt_encoder
    first = enc.dense_pe()
    assert enc.dense_pe() is first  # computed once per dtype
    assert torch.equal(enc.dense_pe(torch.bfloat16), first.to(torch.bfloat16))
    assert torch.equal(first, enc.pe_layer.grid(16).unsqueeze(0))
    state = enc.state_dict()
    state["pe_layer.gaussian_matrix"] = state["pe_layer.gaussian_matrix"] * 2
    enc.load_state_dict(state)  # copies in place: same storage, a new version
    again = enc.dense_pe()
    assert again is not first and torch.equal(again, enc.pe_layer.grid(16).unsqueeze(0))
    assert not torch.equal(again, first)
