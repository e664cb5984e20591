"""``summary``: print the architecture and parameter counts of a model (a bundle or the default config)."""

import argparse

from ..model import TextSegmentModel
from .main import UsageError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("summary", help="print a model's architecture and parameter counts")
    p.add_argument("--bundle", help="model bundle folder (default: a fresh model with the default config)")
    p.add_argument("--image-size", type=int, default=None, help="input size for a fresh model (default 256)")
    return p


def describe(model: TextSegmentModel) -> str:
    """Parameter counts per part and the main settings, as text."""
    cfg = model.config
    lines = [
        f"TextSegment model: input {cfg.image_size}x{cfg.image_size}x{cfg.in_chans} "
        f"(2.5D: {cfg.slice_context}), embedding {cfg.embed_dim}x{cfg.embedding_size}x{cfg.embedding_size}",
        f"text encoder: {cfg.text.name} ({cfg.text.dim}-d, frozen, not counted below)",
    ]
    total = 0
    for name, child in model.named_children():
        n = sum(p.numel() for p in child.parameters())
        total += n
        lines.append(f"  {name:<16} {n / 1e6:8.3f} M")
    total += model.text_type_embed.numel()
    lines.append(f"  {'total':<16} {total / 1e6:8.3f} M parameters")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import BundleError, load_bundle
    from ..model import build_model

    if args.bundle:
        try:
            model = load_bundle(args.bundle)
        except BundleError as exc:
            raise UsageError(str(exc)) from exc
    else:
        model = build_model({"image_size": args.image_size} if args.image_size else None)
    print(describe(model))
    return 0
