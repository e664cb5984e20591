"""Whole-volume validation on the bank's validation variants (held-out variants of the training subject), through
the engine: one view against three, fusion weights, any run checkpoint. This is what settings are chosen by; the
MNI152 evaluation image is never used here.

    python -m training.validate3d --config training/configs/brain_v2_128.yaml --run training/runs/brain_v2
    python -m training.validate3d --config ... --bundle <shipped> --run <candidate run> --quick
    python -m training.validate3d --config ... --run <candidate run> --choose <shipped>  # ship?
    (<shipped>: the embedded bundle, TextSegmentLib/resources/models/<id>)
"""

import argparse
import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk
import torch

from TextSegmentLib.engine import Segmenter
from TextSegmentLib.engine.vocabulary import DEFAULT_MASK_THRESHOLD

from .config import load_config
from .export import load_trained_model
from .heldout import CEREBELLUM, DEEP_GREY, OTHER_GREY
from .metrics import dice
from .synth import draw_contrast, synthesize_slice

log = logging.getLogger("training.validate3d")
PLANES = ("axial", "coronal", "sagittal")
# what the weights to ship are chosen by: the deep grey nuclei and the two large structures they sit in (a run that
# gains on the nuclei but loses the whole brain is not better)
CHOICE = (*DEEP_GREY, "brain", "cerebellum")


def reference(folder: Path, name: str, aal: Optional[np.ndarray] = None) -> np.ndarray:
    """The reference mask of a deep grey structure (also amygdala and globus pallidus), "brain" or "cerebellum" in a
    bank variant (canonical array); ``aal``: the variant's AAL layer when the caller has read it already."""
    if name == "brain":
        return np.load(folder / "layer_brain.npy") > 0
    aal = np.load(folder / "layer_aal.npy") if aal is None else aal
    return np.isin(aal, CEREBELLUM if name == "cerebellum" else {**DEEP_GREY, **OTHER_GREY}[name])


def variant_image(folder: Path, contrast: str = "real") -> sitk.Image:
    """A validation variant as a SimpleITK image (canonical LPS array, identity direction); ``contrast="t2"``
    synthesises a T2-like image from its class map, slice by slice with one set of parameters."""
    info = json.loads((folder / "variant.json").read_text())
    if contrast == "real":
        array = np.load(folder / "image.npy")
    else:
        gen = np.load(folder / "gen.npy")
        rng = np.random.default_rng(info["seed"])
        params = draw_contrast(rng, family=contrast)
        params["bias_std"] = 0.0
        array = np.stack([synthesize_slice(gen[k : k + 1], params, info["gen_counts"], rng) for k in range(len(gen))])
    image = sitk.GetImageFromArray(array.astype(np.float32 if info["modality"] == "MR" else np.int16))
    image.SetSpacing([float(info["spacing"])] * 3)
    return image


def validation_folders(bank: Path, limit: Optional[int] = None) -> List[Path]:
    """The bank's MR validation variants (held-out variants of the training subject), at most ``limit``."""
    folders = sorted(f for f in bank.iterdir() if f.name.startswith("val") and (f / "variant.json").is_file())
    return [f for f in folders if json.loads((f / "variant.json").read_text())["modality"] == "MR"][:limit]


def validate(
    model: torch.nn.Module,
    bank: Path,
    settings: Dict[str, Dict],
    contrasts: Sequence[str] = ("real", "t2"),
    limit: Optional[int] = None,
    names: Sequence[str] = tuple(DEEP_GREY),
) -> Dict[str, Dict[str, float]]:
    """Mean Dice of ``names`` (the eight deep grey structures unless told; see :func:`reference`) per setting
    ({name: segment options}) and contrast."""
    folders = validation_folders(bank, limit)
    seg = Segmenter(model, device="cpu")
    names = list(names)
    scores: Dict[str, Dict[str, List[float]]] = {s: {c: [] for c in contrasts} for s in settings}
    for folder in folders:
        aal = np.load(folder / "layer_aal.npy")  # read once for every structure
        refs = [reference(folder, n, aal) for n in names]
        voxel_ml = float(json.loads((folder / "variant.json").read_text())["spacing"]) ** 3 / 1000.0
        for contrast in contrasts:
            image = variant_image(folder, contrast)
            for name, opts in settings.items():
                result = seg.segment(image, names, **opts)
                for i, ref in enumerate(refs):
                    if ref.sum() * voxel_ml >= 0.05:  # structures the field of view keeps (50 voxels of 1 mm)
                        scores[name][contrast].append(dice(result.mask(i), ref))
        log.info("%s done", folder.name)
    if not any(v for cs in scores.values() for v in cs.values()):
        raise ValueError(f"none of {names} in the validation variants of {bank} is large enough to score")
    return {s: {c: round(float(np.mean(v)), 4) for c, v in cs.items()} for s, cs in scores.items()}


def choice_scores(model: torch.nn.Module, bank: Path, limit: Optional[int] = None) -> Dict[str, float]:
    """What weights are chosen by: :func:`validate` over :data:`CHOICE` with three views at the engine's default
    threshold (one threshold for every candidate: a shipped card's calibrated ones would favour it over uncalibrated
    weights); ``{"real": ..., "t2": ..., "mean": ...}``."""
    opts = {"mask_threshold": DEFAULT_MASK_THRESHOLD, "mirror": False}  # the card's mirror averaging would favour it
    res = validate(model, bank, {"t": opts}, limit=limit, names=CHOICE)["t"]
    return {**res, "mean": round(float(np.mean(list(res.values()))), 4)}


def choose(cfg: Dict, run: Path, shipped: Path, limit: Optional[int] = None) -> Dict[str, object]:
    """Which weights to ship: the run's best and last weights and the shipped bundle, each validated with three views
    on T1 and T2-like variants over :data:`CHOICE` at the engine's default threshold (the shipped card's calibrated
    thresholds are not used; the chosen weights are calibrated after export); the winner has the highest mean of
    the two.
    ``{"choice": "best" | "last" | "shipped", "scores": {...}}``."""
    from TextSegmentLib.checkpoint import load_bundle

    bank = Path(cfg["bank"]["dir"])
    scores: Dict[str, Dict] = {}
    candidates = {"shipped": None, "best": "best", "last": "last"}
    for name, weights in candidates.items():
        if weights is None:
            model = load_bundle(Path(shipped), torch.device("cpu")).requires_grad_(False)
            step: object = Path(shipped).name
        else:
            model, step = load_trained_model(cfg, Path(run), weights)
            model.card = {"input": {"planes": list(PLANES)}}
        scores[name] = {"step": step, **choice_scores(model, bank, limit)}
        log.info("%s (%s): %s", name, step, scores[name])
    choice = max(scores, key=lambda k: (scores[k]["mean"], k == "shipped"))  # a tie keeps the shipped model
    return {"choice": choice, "scores": scores}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Whole-volume validation on the bank's validation variants")
    parser.add_argument("--config", required=True)
    parser.add_argument("--run", help="a training run folder: its best (or last) weights")
    parser.add_argument("--weights", default="best", choices=("best", "last"))
    parser.add_argument("--bundle", action="append", default=[], help="an exported bundle (repeatable)")
    parser.add_argument("--limit", type=int, help="at most this many validation variants")
    parser.add_argument("--quick", action="store_true", help="run: three views only (default and every fine pixel)")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="bundles: segment options to compare, e.g. islands='{\"min_component_fraction\": 0.1}' (repeatable; "
        "default: the card's views with the engine's defaults)",
    )
    parser.add_argument("--all", action="store_true", help="score whole brain and cerebellum with the deep grey")
    parser.add_argument(
        "--choose",
        metavar="SHIPPED",
        help="compare the run's best and last weights with this bundle; print the choice; exit 0 when one of the "
        "run's wins (ship it), 3 when the shipped bundle stays",
    )
    args = parser.parse_args(argv)
    if not args.run and not args.bundle:
        parser.error("give --run or --bundle")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = load_config(args.config)
    if args.choose:
        if not args.run:
            parser.error("--choose needs --run")
        verdict = choose(cfg, Path(args.run), Path(args.choose), args.limit)
        print(json.dumps(verdict, indent=2))
        raise SystemExit(3 if verdict["choice"] == "shipped" else 0)
    bank = Path(cfg["bank"]["dir"])
    report: Dict[str, object] = {}
    names = CHOICE if args.all else tuple(DEEP_GREY)
    bundle_settings = {"card's views": {}}
    for item in args.setting:
        name, _, options = item.partition("=")
        try:
            bundle_settings[name] = dict(json.loads(options))
        except (ValueError, TypeError):
            parser.error(f"--setting {item!r}: expected NAME='{{\"option\": value, ...}}'")
    for path in args.bundle:
        from TextSegmentLib.checkpoint import load_bundle

        model = load_bundle(Path(path), torch.device("cpu")).requires_grad_(False)
        report[Path(path).name] = validate(model, bank, bundle_settings, limit=args.limit, names=names)
    if args.run:
        model, step = load_trained_model(cfg, Path(args.run), args.weights)
        model.card = {"input": {"planes": list(PLANES)}}
        settings = {
            "three views 0.4/0.4/0.2": {"views": PLANES},
            "three views, every fine pixel": {"views": PLANES, "fine_pixels": 1},
        }
        if not args.quick:
            settings["axial only"] = {"views": ("axial",)}
            settings["three views equal"] = {"views": PLANES, "view_weights": {p: 1.0 for p in PLANES}}
        report[f"{args.run} step {step}"] = validate(model, bank, settings, limit=args.limit, names=names)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
