"""Export a trained run as a checkpoint bundle (fp16 weights + a filled model card) and its catalog entry.

    python -m training.export --config training/configs/brain_lite_128.yaml --run training/runs/<name> \
        --out exports/<name> [--metrics training/runs/<name>/eval/metrics.json] [--url https://.../x.zip]

Writes ``<out>/`` (the bundle), and with ``--url`` also ``<out>.zip`` (reproducible archive) and
``<out>.catalog.json`` (the entry for ``TextSegmentLib/resources/models.json``: id, urls, sha256, size, timings...).
"""

import argparse
import json
import logging
import platform
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from TextSegmentLib.checkpoint import save_bundle
from TextSegmentLib.model import build_model

from .config import load_config
from .prepare.run import load_manifest
from .prompting import PromptBank
from .vocabulary import Structure

log = logging.getLogger("training.export")


def load_trained_model(cfg: Dict, run_dir: Path, weights: str = "best"):
    """The model of a run (float32, eval mode, CPU) and its step: ``best.pt`` (the best validation Dice; validation
    never uses the held-out evaluation image) when ``weights="best"`` and it exists, else ``checkpoint.pt``."""
    run_dir = Path(run_dir)
    last = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    model = build_model(last.get("config", cfg).get("model", cfg.get("model", {})))
    state = last
    if weights == "best" and (run_dir / "best.pt").is_file():
        state = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=False)
        log.info("exporting the best validation weights (step %s, mean Dice %s)", state["step"], state["mean_dice"])
    model.load_state_dict(state["model"])
    return model.eval(), int(state.get("step", 0))


def load_samples_manifest(cfg: Dict) -> Dict:
    """What the model was trained on, as a slice-cache manifest (``cases``, ``structures``, ``planes``...); for a
    bank config each training source is a case and the structures are those some training variant labels."""
    if "bank" not in cfg:
        return load_manifest(cfg["prepare"]["cache"])
    root = Path(cfg["bank"]["dir"])
    bank = json.loads((root / "bank.json").read_text(encoding="utf-8"))
    folders = [f for f in sorted(root.iterdir()) if (f / "variant.json").is_file() and f.name.startswith("v")]
    labelled = np.zeros(len(bank["structures"]), dtype=bool)
    layers_by_source: Dict[str, set] = {}
    sources: Dict[str, Dict] = {}
    for f in folders:
        info = json.loads((f / "variant.json").read_text(encoding="utf-8"))
        labelled |= np.load(f / "counts_axial.npy")[0] >= 0
        src = sources.setdefault(info["source"], {"id": info["source"], "modality": info["modality"], "variants": 0})
        src["variants"] += 1
        layers_by_source.setdefault(info["source"], set()).update(p.stem[6:] for p in f.glob("layer_*.npy"))
    planes = list(cfg.get("train", {}).get("data", {}).get("plane_weights", {"axial": 1}))
    cases = [
        {**s, "split": "train", "layers": sorted(layers_by_source[s["id"]]) + ["gen"], "planes": {}}
        for s in sources.values()
    ]
    structures = [s for s, ok in zip(bank["structures"], labelled) if ok]
    return {**bank, "cases": cases, "structures": structures, "planes": planes, "bank_variants": len(folders)}


def vocabulary(manifest: Dict, trained_only: bool = True) -> List[Dict]:
    """Model-card vocabulary (name, synonyms, laterality, region, CT window) of the structures with training data."""
    out = []
    train_cases = [c for c in manifest["cases"] if c["split"] == "train"]
    for s in (Structure.from_dict(x) for x in manifest["structures"]):
        if trained_only and not any(layer in c["layers"] for c in train_cases for layer in s.sources):
            continue
        out.append(s.card_entry())
    return out


def training_data(cfg: Dict, manifest: Dict, step: int, run_dir: Optional[Path] = None) -> Dict:
    """What the model was trained on and how (and, for a warm-started run, from which bundle)."""
    tc = cfg.get("train", {})
    cases = [
        {
            "id": c["id"],
            "modality": c["modality"],
            "split": c["split"],
            "slices": {p: v["n_slices"] for p, v in c.get("planes", {}).items()},
            **({"variants": c["variants"]} if "variants" in c else {}),
        }
        for c in manifest["cases"]
    ]
    extra: Dict = {}
    lineage = Path(run_dir) / "warm_start.json" if run_dir is not None else None
    if lineage is not None and lineage.is_file():
        extra["warm_start"] = json.loads(lineage.read_text(encoding="utf-8"))
    if "bank" in cfg:
        extra["bank"] = {
            "variants": manifest.get("bank_variants"),
            "spatial": cfg["bank"].get("spatial", "training/prepare/variants.py SPATIAL defaults"),
            "p_synth": tc.get("data", {}).get("p_synth"),
            "plane_weights": tc.get("data", {}).get("plane_weights"),
            "long_prompts": tc.get("data", {}).get("p_long_prompt"),
        }
    return {
        **extra,
        "cases": cases,
        "planes": manifest.get("planes", ["axial"]),
        "image_size": manifest["image_size"],
        "min_pixels": manifest["min_pixels"],
        "steps": step,
        "batch_size": tc.get("batch_size"),
        "optimizer": {"name": "AdamW", "lr": tc.get("lr"), "weight_decay": tc.get("weight_decay")},
        "loss": "dice + focal (masks), BCE (presence), MSE (IoU)",
        "augmentation": tc.get("data", {}).get("augment", {}),
        "held_out_phrasings": PromptBank().heldout,
    }


def measure_timings(model) -> Dict:
    """Seconds to segment one reference volume (the MNI152 T1 shipped with nilearn, one prompt) through the engine
    on this machine's CPU; without nilearn, a random 181-slice volume of the same size."""
    from TextSegmentLib.engine import Segmenter, VolumeInput

    try:
        from TextSegmentLib.demo import demo_volume

        volume, name = str(demo_volume()), "MNI152 T1 197x233x189 1 mm"
    except (ImportError, FileNotFoundError):
        rng = np.random.default_rng(0)
        volume = VolumeInput(rng.random((181, 217, 181), dtype=np.float32), (1, 1, 1), (0, 0, 0), np.eye(3).ravel())
        name = "random 181x217x181 volume"
    segmenter = Segmenter(model=model, device="cpu")
    start = time.perf_counter()
    segmenter.segment(volume, ["brain"], use_cache=False)
    seconds = time.perf_counter() - start
    return {
        "cpu_seconds": round(seconds, 2),
        "gpu_seconds": None,
        "reference": f"{name}, one prompt, {platform.machine()} CPU, {torch.get_num_threads()} threads",
    }


def export(
    cfg: Dict,
    run_dir: Path,
    out: Path,
    metrics: Optional[Dict] = None,
    url: Optional[str] = None,
    timings: bool = True,
    weights: str = "best",
) -> Dict:
    """Write the bundle (and with ``url`` the archive and catalog entry); returns {bundle, archive, entry}.

    With ``url`` the archive is ``<out>.zip`` and the entry ``<out>.catalog.json`` (the whole folder name, dots and
    version included: ``exports/name-v0.1.0`` gives ``exports/name-v0.1.0.zip``)."""
    model, step = load_trained_model(cfg, run_dir, weights)
    manifest = load_samples_manifest(cfg)
    ex = cfg.get("export", {})
    vocab = vocabulary(manifest)
    for entry in vocab:  # shells (a skull): filling their holes slice by slice would add what they enclose
        if entry["name"] in ex.get("shells", []):
            entry["fill_holes"] = False
    modalities = sorted({c["modality"] for c in manifest["cases"] if c["split"] == "train"})
    card = {
        "name": cfg.get("name", "textsegment-custom"),
        "version": str(cfg.get("version", "0.0.0")),
        "title": ex.get("title", cfg.get("name")),
        "description": ex.get("description", ""),
        "modalities": modalities,
        "vocabulary": vocab,
        "training_data": training_data(cfg, manifest, step, run_dir),
        "metrics": metrics or {},
        "license": ex.get("license", "Apache-2.0"),
        "input": {
            "planes": manifest.get("planes", ["axial"]),
            "view_weights": ex.get("view_weights", {"axial": 0.4, "coronal": 0.4, "sagittal": 0.2}),
            "align_head": bool(ex.get("align_head", False)),
            "mirror": bool(ex.get("mirror", False)),
        },
    }
    if timings:
        card["timings"] = measure_timings(model)
    bundle = save_bundle(model, out, card, half=True)
    result = {"bundle": str(bundle), "archive": None, "entry": None}
    if url:
        from TextSegmentLib.catalog.publish import make_entry, pack_bundle

        archive = pack_bundle(bundle, out.parent / f"{out.name}.zip")
        entry = make_entry(archive, [url], modalities=modalities)
        with open(out.parent / f"{out.name}.catalog.json", "w", encoding="utf-8") as fh:
            json.dump(entry, fh, indent=2)
        result.update(archive=str(archive), entry=entry)
    log.info("exported %s (%d structures, step %d)", bundle, len(vocab), step)
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Export a trained run as a bundle and catalog entry.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--run", help="run folder with checkpoint.pt (default training/runs/<config name>)")
    parser.add_argument("--out", help="bundle folder (default exports/<name>-v<version>)")
    parser.add_argument("--metrics", help="metrics.json written by training.evaluate")
    parser.add_argument("--url", help="where the archive will be published; writes <out>.zip and <out>.catalog.json")
    parser.add_argument("--no-timings", action="store_true")
    parser.add_argument(
        "--weights",
        choices=("best", "last"),
        default="best",
        help="best: the run's best validation weights (best.pt) when it has them; last: checkpoint.pt",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = load_config(args.config)
    run = Path(args.run or Path("training/runs") / cfg["name"])
    out = Path(args.out or Path("exports") / f"{cfg['name']}-v{cfg.get('version', '0.0.0')}")
    metrics = json.loads(Path(args.metrics).read_text(encoding="utf-8")) if args.metrics else None
    res = export(cfg, run, out, metrics, args.url, not args.no_timings, args.weights)
    print(json.dumps({k: v for k, v in res.items() if k != "entry"}, indent=2))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
