"""Text features computed once: every prompt of the training pool goes through the frozen encoder a single time and
is stored (float16) in the cache folder, keyed by the encoder and the prompt."""

import hashlib
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from TextSegmentLib.model import TextEmbedding, TextSegmentModel

log = logging.getLogger(__name__)


class TextFeatureCache:
    """Maps prompt -> (sentence (d,), tokens (L, d)); builds :class:`TextEmbedding` batches (``None`` = no text)."""

    def __init__(self, features: Dict[str, "tuple[torch.Tensor, torch.Tensor]"], dim: int) -> None:
        self.features = features
        self.dim = dim

    @classmethod
    def build(cls, model: TextSegmentModel, prompts: Sequence[str], cache_dir: Optional[Path] = None):
        """Encode ``prompts`` with the model's frozen text encoder, reusing ``cache_dir/text_<key>.pt`` if present."""
        prompts = sorted(set(prompts))
        spec = model.config.text
        key = hashlib.sha256(("\n".join([spec.name, str(spec.revision), str(spec.max_tokens)] + prompts)).encode())
        path = Path(cache_dir) / f"text_{key.hexdigest()[:16]}.pt" if cache_dir else None
        if path is not None and path.is_file():
            data = torch.load(path, weights_only=True)
            return cls({p: (s.float(), t.float()) for p, (s, t) in zip(prompts, zip(data["s"], data["t"]))}, spec.dim)
        log.info("encoding %d prompts with the frozen text encoder", len(prompts))
        feats = {}
        for i in range(0, len(prompts), 64):
            chunk = prompts[i : i + 64]
            emb = model.text_encoder.encode(chunk)
            for j, p in enumerate(chunk):
                n = int(emb.mask[j].sum())
                # stored as float16; rounded the same way here so a fresh and a cached run see identical features
                feats[p] = (emb.sentence[j].half().float(), emb.tokens[j, :n].half().float())
        if path is not None:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            torch.save({"s": [feats[p][0].half() for p in prompts], "t": [feats[p][1].half() for p in prompts]}, tmp)
            tmp.replace(path)
        return cls(feats, spec.dim)

    def batch(self, prompts: List[Optional[str]]) -> TextEmbedding:
        """TextEmbedding of a batch, padded to its longest prompt."""
        feats = [
            self.features[p] if p is not None else (torch.zeros(self.dim), torch.zeros(0, self.dim)) for p in prompts
        ]
        length = max([t.shape[0] for _, t in feats] + [1])
        tokens = torch.zeros(len(feats), length, self.dim)
        mask = torch.zeros(len(feats), length, dtype=torch.bool)
        for i, (_, t) in enumerate(feats):
            tokens[i, : t.shape[0]] = t
            mask[i, : t.shape[0]] = True
        return TextEmbedding(torch.stack([s for s, _ in feats]), tokens, mask)
