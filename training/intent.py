"""Training-only wrapper: the model plus FLanS's intention classifier (which structure does the text ask for?).

The classifier reads the model's projected sentence embedding, so it teaches the text projection to separate
structures (left from right included); it is not part of the exported bundle.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from TextSegmentLib.model import TextEmbedding, TextSegmentModel
from TextSegmentLib.model.mask_decoder import DecoderOutput


class TrainingModule(nn.Module):
    """``forward`` returns (decoder output, intention logits or None); DDP wraps this module."""

    def __init__(self, model: TextSegmentModel, n_classes: int = 0) -> None:
        super().__init__()
        self.model = model
        self.intent = nn.Linear(model.config.embed_dim, n_classes) if n_classes else None

    def forward(
        self, images: torch.Tensor, text: TextEmbedding, **prompts
    ) -> Tuple[DecoderOutput, Optional[torch.Tensor]]:
        out = self.model(images, text=text, **prompts)
        logits = None
        if self.intent is not None:
            logits = self.intent(self.model.sentence_proj(text.sentence.to(self.model.device)))
        return out, logits


def intent_loss(logits: Optional[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over items with a target (>= 0); zero when there are none or no classifier."""
    if logits is None or not bool((targets >= 0).any()):
        return torch.zeros((), device=targets.device if logits is None else logits.device)
    return F.cross_entropy(logits, targets.to(logits.device), ignore_index=-100)
