"""TextSegmentModel: image encoder + text/box/point/mask prompts + mask decoder (LangMedSAM design)."""

import copy
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..device import autocast_for
from .config import ModelConfig
from .image_encoder import ImageEncoder
from .layers import MLP
from .mask_decoder import DecoderOutput, MaskDecoder
from .prompt_encoder import PromptEncoder
from .text_encoder import TextEmbedding, TextEncoder

TextLike = Union[TextEmbedding, Sequence[Optional[str]], str, None]


def _batch_size(*sizes: int) -> int:
    sizes_set = {s for s in sizes if s != 1}
    if len(sizes_set) > 1:
        raise ValueError(f"batch sizes do not match: {sorted(sizes)}; each input must have the same size or 1")
    return sizes_set.pop() if sizes_set else 1


def _expand(x: torch.Tensor, batch: int) -> torch.Tensor:
    return x if x.shape[0] == batch else x.expand(batch, *x.shape[1:])


def _cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` in ``dtype``; a broadcast view (stride 0) stays one: its values are cast, not its expanded copy (which
    would also lose the channels-last layout the decoder reads)."""
    if x.dtype == dtype:
        return x
    index = tuple(slice(0, 1) if s == 0 and n > 1 else slice(None) for s, n in zip(x.stride(), x.shape))
    return x[index].to(dtype).expand(x.shape)


class _InferenceCopies:
    """Copies of modules in another dtype for inference, remade when one of the originals' tensors changed (in place,
    e.g. ``load_state_dict`` or an optimiser step, or replaced, e.g. ``.to()``); checking costs microseconds where
    ``state_dict()`` cost milliseconds per call."""

    def __init__(self) -> None:
        self.originals: Tuple[nn.Module, ...] = ()
        self.tensors: List[torch.Tensor] = []
        self.key: Any = None
        self.copies: Tuple[nn.Module, ...] = ()

    def get(self, originals: Tuple[nn.Module, ...], dtype: torch.dtype, device: torch.device) -> Tuple[nn.Module, ...]:
        if self.originals != originals:
            self.originals = originals
            self.tensors = [t for m in originals for t in (*m.parameters(), *m.buffers())]
            self.key = None
        key = (dtype, device, tuple((t.data_ptr(), t._version) for t in self.tensors))
        if key != self.key:
            self.copies = tuple(copy.deepcopy(m).to(dtype).eval() for m in originals)
            self.key = key
        return self.copies


class TextSegmentModel(nn.Module):
    """Promptable 2D slice segmentation model.

    Images are (B, 3, S, S) float tensors with intensities in **[0, 255]** (S = ``config.image_size``);
    boxes (x0, y0, x1, y1) and points (x, y) are in S x S input pixels. Any of text, box, points and a previous
    mask can be given alone or together; a tensor with first dimension 1 is broadcast over the batch.

    ``inference_dtype`` (float32 unless set; the engine sets it from its ``precision``) is the dtype that the image
    encoder and the mask decoder run in without autograd: bfloat16 runs them on bf16 copies of their weights (made
    once, remade when the weights change); the text and prompt encoders and all outputs stay float32.

    Example:
        >>> from TextSegmentLib.model import build_model
        >>> model = build_model({"image_size": 64, "embed_dim": 32, "decoder_heads": 4, "decoder_mlp_dim": 64})
        >>> emb = model.encode_image(torch.zeros(2, 3, 64, 64))
        >>> out = model.decode(emb, text=["brain"], boxes=torch.tensor([[8., 8., 40., 40.]]))
        >>> out.masks.shape, out.iou.shape, out.presence.shape
        (torch.Size([2, 1, 64, 64]), torch.Size([2, 1]), torch.Size([2, 1]))
    """

    def __init__(self, config: ModelConfig, text_base_dir: Optional[Path] = None) -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.image_encoder = ImageEncoder(config)
        self.prompt_encoder = PromptEncoder(dim, config.image_size)
        self.mask_decoder = MaskDecoder(config)
        self.sentence_proj = MLP(config.text.dim, dim, dim)
        self.token_proj = MLP(config.text.dim, dim, dim)
        self.text_type_embed = nn.Parameter(torch.zeros(1, 1, dim))
        self._text_base_dir = text_base_dir
        self._text_encoder: Optional[TextEncoder] = None
        self.card: Dict[str, Any] = {}  # the model card when loaded from a bundle
        self.bundle_dir: Optional[Path] = None
        self.inference_dtype = torch.float32
        self._copies = _InferenceCopies()  # the encoder and decoder in inference_dtype (see _compute)

    @property
    def device(self) -> torch.device:
        return self.text_type_embed.device

    @property
    def text_encoder(self) -> TextEncoder:
        """The frozen text encoder (created on first use; not part of the saved weights)."""
        if self._text_encoder is None:
            self._text_encoder = TextEncoder(self.config.text, self._text_base_dir)
        return self._text_encoder

    def _compute(self) -> Tuple[torch.dtype, nn.Module, nn.Module]:
        """(dtype, image encoder, mask decoder) for this call: the modules themselves in float32 or with autograd,
        else copies in ``inference_dtype`` (remade when a weight changed, e.g. after ``load_state_dict``)."""
        dtype = self.inference_dtype
        if dtype == torch.float32 or torch.is_grad_enabled():
            return torch.float32, self.image_encoder, self.mask_decoder
        encoder, decoder = self._copies.get((self.image_encoder, self.mask_decoder), dtype, self.device)
        return dtype, encoder, decoder

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) slices in [0, 255] -> (B, D, S/4, S/4) embeddings (float32)."""
        size = self.config.image_size
        if images.ndim != 4 or images.shape[1] != self.config.in_chans or images.shape[-2:] != (size, size):
            raise ValueError(f"images must be (B, {self.config.in_chans}, {size}, {size}), got {tuple(images.shape)}")
        dtype, encoder, _ = self._compute()
        # channels-last: the attention stages' (B, C, H, W) <-> (B, H, W, C) permutes become views, not copies
        images = images.to(self.device, dtype).contiguous(memory_format=torch.channels_last)
        with autocast_for(self.device):
            return encoder(images).float()

    def encode_text(self, prompts: Sequence[Optional[str]]) -> TextEmbedding:
        """Raw text features of prompts (cached by prompt); ``None`` means no text for that item."""
        if isinstance(prompts, str):
            prompts = [prompts]
        return self.text_encoder.encode(list(prompts))

    def _project_text(self, text: TextEmbedding, batch: int):
        text = text.to(self.device)
        sentence = self.sentence_proj(text.sentence)
        has_text = text.mask.any(dim=1, keepdim=True)
        sentence = sentence * has_text
        tokens = (self.token_proj(text.tokens) + self.text_type_embed) * text.mask[..., None]
        return _expand(sentence, batch), _expand(tokens, batch), _expand(text.mask, batch)

    def decode(
        self,
        image_embeddings: torch.Tensor,
        text: TextLike = None,
        boxes: Optional[torch.Tensor] = None,
        points: Optional[torch.Tensor] = None,
        point_labels: Optional[torch.Tensor] = None,
        mask_inputs: Optional[torch.Tensor] = None,
        presence_threshold: Optional[float] = None,
        images: Optional[torch.Tensor] = None,
        crop: Optional[Tuple[int, int, int, int]] = None,
        probe: bool = False,
    ) -> DecoderOutput:
        """Decode masks from cached image embeddings and any combination of prompts.

        ``text``: prompts (str or list, ``None`` entries for no text) or a :class:`TextEmbedding`.
        ``boxes`` (B, 4); ``points`` (B, N, 2) with ``point_labels`` (B, N): 1 positive, 0 negative, -1 padding;
        ``mask_inputs`` (B, 1, S, S) logits of a previous mask. With ``presence_threshold`` set, items whose presence
        logit is below it skip the mask upscaling and get a constant negative mask (faster whole-volume decoding).
        ``images`` (B, 3, S, S) in [0, 255], the slices the embeddings came from: models with ``detail_channels``
        use them for edges finer than the embedding grid (without them such a model decodes as if it had none).
        ``crop`` (y0, y1, x0, x1): only these mask pixels are wanted (widened to whole tokens); the rest of the mask
        is the constant negative logit, and the upscaling costs the crop's share of it. ``probe``: the mask only at
        one pixel of each 4 x 4 block, (4i + 2, 4j + 2), repeated over the block (a 16th of the upscaling; enough to
        see where a target is, not its edges).
        """
        if isinstance(text, str):
            text = [text]
        if text is not None and not isinstance(text, TextEmbedding):
            text = self.encode_text(text)
        dtype, _, decoder = self._compute()
        emb = image_embeddings.to(self.device, dtype)
        sizes = [emb.shape[0]]
        for t in (boxes, points, mask_inputs, images):
            if t is not None:
                sizes.append(t.shape[0])
        if text is not None:
            sizes.append(len(text))
        batch = _batch_size(*sizes)
        emb = _expand(emb, batch)
        with autocast_for(self.device):
            sparse, valid, dense = self.prompt_encoder(batch, boxes, points, point_labels, mask_inputs)
            if text is not None:
                sentence, tokens, tmask = self._project_text(text, batch)
                sparse = torch.cat([tokens, sparse], dim=1)
                valid = torch.cat([tmask, valid], dim=1)
            else:
                sentence = torch.zeros(batch, self.config.embed_dim, device=self.device)
            if images is not None:
                images = _expand(images.to(self.device, torch.float32), batch)
            out = decoder(
                emb,
                self.prompt_encoder.dense_pe(dtype),
                _cast(sentence, dtype),
                _cast(sparse, dtype),
                valid,
                _cast(dense, dtype),
                presence_threshold,
                images,
                crop,
                probe,
            )
        return DecoderOutput(out.masks.float(), out.iou.float(), out.presence.float())

    def forward(self, images: torch.Tensor, **prompts) -> DecoderOutput:
        """One call: ``decode(encode_image(images), images=images, **prompts)``."""
        return self.decode(self.encode_image(images), images=images, **prompts)
