"""Per-structure mask thresholds for an exported bundle, chosen on the bank's validation variants and written into
its model card (the MNI152 evaluation image is never used here).

Three-view fusion averages the planes' probabilities, and the planes agree less on some structures than on others:
at the engine's default cut (0.5) the fused hippocampus and cerebellum of the validation variants came out a third
too small, the thalamus right. For each structure that validation scores (the deep grey nuclei, amygdala, pallidum,
brain, cerebellum; left and right pooled) every threshold of ``--grid`` (0.30-0.60) is tried, through the engine, on
T1 and T2-like variants; the one with the highest mean Dice goes into the vocabulary entries of that structure
(``"mask_threshold"`` of ``name``, ``left name``, ``right name``) when it beats 0.5 by at least ``--min-gain``. The
engine uses an entry's threshold whenever a call does not set ``mask_threshold`` itself.

Where a structure's voxels look alike, the edge voxels unlike them are trimmed (``TextSegmentLib/engine/trim.py``):
each mask is also scored trimmed at ``TRIM_SDS``, and a structure whose trimmed masks gain ``--min-gain`` on average
and lose on no contrast (the T2-like variants are synthesised from class maps with one intensity per class, where
trimming always pays; on real T1 it cost the caudate, putamen and thalamus up to 0.1) gets ``"trim_outliers"`` in
its entries.

Every scored structure is one piece (one side's nucleus, the brain, the cerebellum), so each mask is also scored with
only its largest 3D component kept (the engine's ``largest_only`` clean-up); when that beats the best threshold with
every component by ``--min-gain`` too, the scored names' entries get ``"largest_only": true`` (and the engine keeps
one piece for them unless a call says otherwise). Entries of bilateral groups ("hippocampi") never get it. The card's
``calibration`` records what was tried.

    python -m training.calibrate --config training/configs/brain_v8_128.yaml --bundle training/runs/<id> --limit 4
"""

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
import torch

from TextSegmentLib.checkpoint import CARD_FILE, check_bundle, load_bundle, read_card
from TextSegmentLib.engine import Segmenter
from TextSegmentLib.engine.decode import cleanup_3d
from TextSegmentLib.engine.trim import trim_outliers
from TextSegmentLib.engine.vocabulary import DEFAULT_MASK_THRESHOLD
from TextSegmentLib.engine.writers import write_text
from TextSegmentLib.prompts import split_side, words

from .config import load_config
from .heldout import OTHER_GREY
from .metrics import dice
from .validate3d import CHOICE, reference, validation_folders, variant_image

log = logging.getLogger("training.calibrate")
GRID = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
#: the structures with a reference in the validation variants: deep grey nuclei, amygdala, pallidum, brain, cerebellum
NAMES = (*CHOICE, *OTHER_GREY)
#: the robust standard deviations at which edge outliers are tried (engine/trim.py)
TRIM_SDS = 2.5


def base_name(name: str) -> str:
    """A structure's name without its side words.

    Example:
        >>> base_name("left caudate nucleus"), base_name("brain")
        ('caudate nucleus', 'brain')
    """
    return " ".join(split_side(words(name))[1])


Scores = Dict[str, Dict[float, List[float]]]  # {name: {threshold: [Dice per variant and contrast]}}
#: {name: {threshold: {contrast: [Dice trimmed - Dice untrimmed per variant]}}}
Gains = Dict[str, Dict[float, Dict[str, List[float]]]]


def largest_piece(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected 3D component of ``mask``, as the engine's ``largest_only`` clean-up keeps it.

    Example:
        >>> m = np.zeros((4, 6, 6), bool); m[0:3, 0:3, 0:3] = True; m[3, 5, 5] = True
        >>> int(largest_piece(m).sum())
        27
    """
    return cleanup_3d(mask, voxel_ml=1.0, min_component_ml=0.0, min_slices=1, fill_holes=False, largest_only=True)


def score_grid(
    model: torch.nn.Module,
    bank: Path,
    grid: Sequence[float] = GRID,
    names: Sequence[str] = NAMES,
    contrasts: Sequence[str] = ("real", "t2"),
    limit: Optional[int] = None,
) -> Tuple[Scores, Scores, Gains]:
    """Dice of every structure of ``names`` at every threshold of ``grid`` on the validation variants of ``bank``,
    with every component the engine keeps and with the largest one only: two ``{name: {threshold: [dice per variant
    and contrast]}}`` (structures the field of view cuts to under 50 voxels are not scored); and what trimming the
    edge outliers at ``TRIM_SDS`` gains, per contrast (:data:`Gains`)."""
    seg = Segmenter(model, device="cpu")
    names = list(names)
    scores: Scores = {n: {float(t): [] for t in grid} for n in names}
    pieces: Scores = {n: {float(t): [] for t in grid} for n in names}
    gains: Gains = {n: {float(t): {c: [] for c in contrasts} for t in grid} for n in names}
    for folder in validation_folders(bank, limit):
        aal = np.load(folder / "layer_aal.npy")
        refs = [reference(folder, n, aal) for n in names]
        for contrast in contrasts:
            image = variant_image(folder, contrast)
            voxels = np.asarray(sitk.GetArrayViewFromImage(image))
            for t in grid:  # the embeddings are encoded once per image and reused for every threshold
                result = seg.segment(image, names, mask_threshold=float(t), largest_only=False, trim_outliers=0)
                for i, ref in enumerate(refs):
                    if ref.sum() >= 50:
                        mask = result.mask(i)
                        scores[names[i]][float(t)].append(dice(mask, ref))
                        pieces[names[i]][float(t)].append(dice(largest_piece(mask), ref))
                        trimmed = dice(trim_outliers(voxels, mask, TRIM_SDS), ref)
                        gains[names[i]][float(t)][contrast].append(trimmed - scores[names[i]][float(t)][-1])
        log.info("%s done", folder.name)
    return scores, pieces, gains


def _pool(scores: Mapping[str, Mapping[float, Sequence[float]]]) -> Dict[str, Dict[float, List[float]]]:
    """Scores of the left and right structure (and the unsided one) pooled under the base name."""
    pooled: Dict[str, Dict[float, List[float]]] = {}
    for name, by_threshold in scores.items():
        into = pooled.setdefault(base_name(name), {})
        for t, values in by_threshold.items():
            into.setdefault(float(t), []).extend(float(v) for v in values)
    return pooled


def choose_thresholds(
    scores: Mapping[str, Mapping[float, Sequence[float]]],
    default: float = DEFAULT_MASK_THRESHOLD,
    min_gain: float = 0.005,
    pieces: Optional[Mapping[str, Mapping[float, Sequence[float]]]] = None,
    gains: Optional[Gains] = None,
) -> Dict[str, Dict[str, Any]]:
    """Per structure (sides pooled), the threshold with the highest mean Dice, kept only when it beats ``default``
    by ``min_gain`` (else ``default``); with ``pieces`` (the same scores with the largest component only), largest
    only when its best threshold beats that by ``min_gain`` again: ``{base name: {"threshold", "largest_only",
    "dice", "dice_default", "n", "names"}}`` (``names``: the scored names pooled), with ``"dice_largest_only"`` (at its
    best threshold) when ``pieces`` are given. With ``gains`` (:data:`Gains`), ``"trim_outliers": TRIM_SDS`` (else
    0) when trimming at the chosen threshold gains ``min_gain`` on average and loses on no contrast (without the
    largest component only), with ``"trim_gain"`` per contrast.

    Example:
        >>> s = {"left hippocampus": {0.4: [0.5, 0.5], 0.5: [0.4, 0.4]}, "right hippocampus": {0.4: [0.4], 0.5: [0.3]},
        ...      "brain": {0.4: [0.90], 0.5: [0.899]}}
        >>> {k: v["threshold"] for k, v in choose_thresholds(s).items()}
        {'hippocampus': 0.4, 'brain': 0.5}
        >>> one = {"left hippocampus": {0.4: [0.6, 0.6], 0.5: [0.5, 0.5]},
        ...        "right hippocampus": {0.4: [0.5], 0.5: [0.3]}, "brain": {0.4: [0.901], 0.5: [0.899]}}
        >>> {k: (v["threshold"], v["largest_only"]) for k, v in choose_thresholds(s, pieces=one).items()}
        {'hippocampus': (0.4, True), 'brain': (0.5, False)}
    """
    pooled, pooled_pieces = _pool(scores), _pool(pieces or {})
    out: Dict[str, Dict[str, Any]] = {}
    for base, by_threshold in pooled.items():
        means = {t: float(np.mean(v)) for t, v in by_threshold.items() if v}
        if default not in means:
            continue  # nothing to compare against: not scored
        best = max(means, key=lambda t: (means[t], t == default))
        if means[best] < means[default] + min_gain:
            best = default
        chosen: Dict[str, Any] = {"threshold": best, "largest_only": False, "dice": round(means[best], 4)}
        one = {t: float(np.mean(v)) for t, v in pooled_pieces.get(base, {}).items() if v}
        if one:
            t_one = max(one, key=lambda t: (one[t], t == default))
            if one[t_one] >= means[best] + min_gain:
                chosen = {"threshold": t_one, "largest_only": True, "dice": round(one[t_one], 4)}
            chosen["dice_largest_only"] = round(one[t_one], 4)  # at its best threshold
        names = sorted(n for n in scores if base_name(n) == base)
        if gains is not None:
            chosen.update(_trim_choice(gains, names, chosen, min_gain))
        n = len(by_threshold[default])
        out[base] = {**chosen, "dice_default": round(means[default], 4), "n": n, "names": names}
    return out


def _trim_choice(gains: Gains, names: Sequence[str], chosen: Mapping[str, Any], min_gain: float) -> Dict[str, Any]:
    """Whether the structures ``names`` (sides pooled) are trimmed at the ``chosen`` threshold (see
    :func:`choose_thresholds`)."""
    by_contrast: Dict[str, List[float]] = {}
    for name in names:
        for contrast, values in gains.get(name, {}).get(float(chosen["threshold"]), {}).items():
            by_contrast.setdefault(contrast, []).extend(values)
    means = {c: round(float(np.mean(v)), 4) for c, v in by_contrast.items() if v}
    every = [g for v in by_contrast.values() for g in v]
    pays = bool(every) and float(np.mean(every)) >= min_gain and min(means.values()) >= 0.0
    return {"trim_outliers": TRIM_SDS if pays and not chosen.get("largest_only") else 0.0, "trim_gain": means}


def apply_thresholds(card: Dict[str, Any], chosen: Mapping[str, Mapping[str, Any]], record: Dict[str, Any]) -> int:
    """Write the chosen thresholds into the vocabulary entries of ``card`` named ``base``, ``left base`` or
    ``right base`` (a threshold equal to the engine's default removes the entry's own), and ``"largest_only": true``
    into the entries of the scored ``names`` of a structure chosen with it (never into other entries: "hippocampi" is
    two pieces); ``record`` goes to ``card["calibration"]["mask_threshold"]``. Returns the number of entries that
    carry a threshold or largest only.

    Example:
        >>> card = {"vocabulary": [{"name": "left hippocampus"}, {"name": "hippocampi"}, {"name": "brain"}]}
        >>> apply_thresholds(card, {"hippocampus": {"threshold": 0.4}, "brain": {"threshold": 0.5}}, {})
        1
        >>> card["vocabulary"][0], card["vocabulary"][1]
        ({'name': 'left hippocampus', 'mask_threshold': 0.4}, {'name': 'hippocampi'})
        >>> one = {"brain": {"threshold": 0.5, "largest_only": True, "names": ["brain"]}}
        >>> apply_thresholds(card, one, {}), card["vocabulary"][2]
        (1, {'name': 'brain', 'largest_only': True})
    """
    count = 0
    for entry in card.get("vocabulary", []):
        if not isinstance(entry, dict):
            continue
        name = entry.get("name", "")
        side, _ = split_side(words(name))
        pick = chosen.get(base_name(name)) if side in (None, "left", "right") else None
        for key in ("mask_threshold", "largest_only", "trim_outliers"):
            entry.pop(key, None)
        if pick is None:
            continue
        if float(pick["threshold"]) != DEFAULT_MASK_THRESHOLD:
            entry["mask_threshold"] = float(pick["threshold"])
        if pick.get("largest_only") and name in pick.get("names", ()):
            entry["largest_only"] = True
        if pick.get("trim_outliers"):
            entry["trim_outliers"] = float(pick["trim_outliers"])
        count += any(k in entry for k in ("mask_threshold", "largest_only", "trim_outliers"))
    card.setdefault("calibration", {})["mask_threshold"] = record
    return count


def write_card(bundle: Path, card: Dict[str, Any]) -> None:
    """Replace the bundle's model card atomically (read back before the rename), then check the bundle."""
    write_text(json.dumps(card, indent=2), Path(bundle) / CARD_FILE)
    check_bundle(bundle)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Per-structure mask thresholds for a bundle, from validation")
    parser.add_argument("--config", required=True, help="the training config (its bank holds the validation variants)")
    parser.add_argument("--bundle", required=True, help="an exported bundle folder; its model.json is updated")
    parser.add_argument("--limit", type=int, help="at most this many validation variants")
    parser.add_argument("--grid", default=",".join(str(t) for t in GRID), help="thresholds to try, comma-separated")
    parser.add_argument("--min-gain", type=float, default=0.005, help="mean Dice a threshold must gain over 0.5")
    parser.add_argument("--dry-run", action="store_true", help="print the choice, leave the card as it is")
    args = parser.parse_args(argv)
    try:
        grid = sorted({float(t) for t in args.grid.split(",") if t.strip()} | {DEFAULT_MASK_THRESHOLD})
    except ValueError:
        parser.error(f"--grid {args.grid!r}: expected numbers from 0 to 1, comma-separated")
    if not all(0.0 < t < 1.0 for t in grid):
        parser.error(f"--grid {args.grid!r}: thresholds must lie between 0 and 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = load_config(args.config)
    bundle = Path(args.bundle)
    card = read_card(bundle)
    model = load_bundle(bundle, torch.device("cpu")).requires_grad_(False)  # every call sets its threshold
    scores, pieces, gains = score_grid(model, Path(cfg["bank"]["dir"]), grid, limit=args.limit)
    chosen = choose_thresholds(scores, min_gain=args.min_gain, pieces=pieces, gains=gains)
    record = {"grid": grid, "contrasts": ["T1", "T2-like"], "min_gain": args.min_gain, "trim_sds": TRIM_SDS,
              "mirror": bool(card.get("input", {}).get("mirror")), "structures": chosen}  # fmt: skip
    print(json.dumps(record, indent=2))
    if not args.dry_run:
        count = apply_thresholds(card, chosen, record)
        write_card(bundle, card)
        log.info(
            "%s: %d vocabulary entries carry a calibrated threshold, largest only or outlier trimming",
            bundle / CARD_FILE,
            count,
        )


if __name__ == "__main__":
    main()
