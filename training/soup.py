"""Average the weights of bundles along one warm-start chain ("model soup") into a new bundle.

    python -m training.soup --out training/runs/soup <bundle v0.7> <bundle v0.8> \
        [--weights 1,1] [--version 0.9.0]

Every bundle must have the same architecture (the card's ``architecture``); the soup gets the last bundle's card
(vocabulary, calibration, input) with ``version`` and ``training_data.soup`` (the ingredients and weights) updated.
Weight averaging of checkpoints from one training trajectory (the shipped versions continue each other) tends to
land in a flatter, better-generalising point than any of them; whether it does here is for
``training.validate3d --bundle`` to say on the validation variants (never on the held-out image). Recalibrate the
mask thresholds of a soup before shipping it (``training.calibrate``).
"""

import argparse
import copy
import json
import logging
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from TextSegmentLib.checkpoint import load_bundle, read_card, save_bundle

log = logging.getLogger("training.soup")


def soup(bundles: Sequence[Path], out: Path, weights: Optional[Sequence[float]] = None, version: str = "") -> Path:
    """Write the weighted mean of ``bundles``' weights as a bundle at ``out`` (fp16, like the shipped ones).

    Example:
        >>> import tempfile
        >>> from TextSegmentLib.model import build_model
        >>> d = Path(tempfile.mkdtemp())
        >>> cfg = {"image_size": 64, "embed_dim": 32, "decoder_heads": 4, "decoder_mlp_dim": 64}
        >>> a = save_bundle(build_model(cfg), d / "a", {"name": "tiny", "version": "0.1.0"})
        >>> b = save_bundle(build_model(cfg), d / "b", {"name": "tiny", "version": "0.2.0"})
        >>> s = load_bundle(soup([a, b], d / "s", version="0.3.0"))
        >>> w = [load_bundle(x).mask_decoder.output_tokens.weight for x in (a, b)]
        >>> torch.allclose(s.mask_decoder.output_tokens.weight, (w[0] + w[1]) / 2, atol=1e-3), s.card["version"]
        (True, '0.3.0')
    """
    bundles = [Path(b) for b in bundles]
    if len(bundles) < 2:
        raise ValueError("a soup needs at least two bundles")
    if Path(out).resolve() in {b.resolve() for b in bundles}:
        raise ValueError(f"the soup would replace its ingredient {out}: give another --out")
    weights = [1.0] * len(bundles) if weights is None else [float(w) for w in weights]
    if len(weights) != len(bundles) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"give one non-negative weight per bundle ({len(bundles)}), not all zero; got {weights}")
    cards = [read_card(b) for b in bundles]
    first = json.dumps(cards[0].get("architecture"), sort_keys=True)
    for path, card in zip(bundles[1:], cards[1:]):
        if json.dumps(card.get("architecture"), sort_keys=True) != first:
            raise ValueError(f"{path} has another architecture than {bundles[0]}: their weights cannot be averaged")
    total = sum(weights)
    model = load_bundle(bundles[-1])
    # floating tensors averaged; integer buffers (e.g. counters) stay the last bundle's
    mean = {k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    for path, w in zip(bundles, weights):
        for k, v in load_bundle(path).state_dict().items():
            if v.is_floating_point():
                mean[k] += v * (w / total)
    model.load_state_dict(mean, strict=True)
    card = copy.deepcopy(cards[-1])
    for key in ("weights_sha256", "weights_dtype"):
        card.pop(key, None)
    if version:
        card["version"] = version
    data = card.setdefault("training_data", {})
    # each ingredient by its card's name and version, its folder (two runs of one version differ only there) and
    # the training steps its weights are from
    data["soup"] = [{"bundle": c.get("name", "") + "-v" + str(c.get("version", "")), "folder": Path(p).name,
                     "steps": c.get("training_data", {}).get("steps"), "weight": w / total}
                    for c, p, w in zip(cards, bundles, weights)]  # fmt: skip
    return save_bundle(model, out, card, half=True)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Average bundles' weights into a new bundle (model soup)")
    parser.add_argument("bundles", nargs="+", help="bundle folders of one architecture")
    parser.add_argument("--out", required=True, help="the soup's bundle folder")
    parser.add_argument("--weights", help="comma-separated weights, one per bundle (default: equal)")
    parser.add_argument("--version", default="", help="the soup's version in its card (default: the last bundle's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    weights = [float(w) for w in args.weights.split(",")] if args.weights else None
    try:
        out = soup(args.bundles, Path(args.out), weights, args.version)
    except ValueError as exc:
        parser.error(str(exc))
    print(out)


if __name__ == "__main__":
    main()
