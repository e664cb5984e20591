"""Evaluate a model: the slice protocol of seed 000 and a 3D protocol through the volume engine.

    python -m training.evaluate --config training/configs/brain_lite_128.yaml --run training/runs/<name>
    python -m training.evaluate --config ... --bundle exports/<bundle>      # an exported bundle instead

Slice protocol: every slice where a structure covers >= ``min_pixels`` (model resolution), prompted with its
canonical name and with held-out phrasings never used in training; Dice and NSD at 2 mm; on slices where it is
absent, the false-positive rate (presence > 0.5 and a non-empty mask). 3D protocol: whole volumes through
``TextSegmentLib.engine.Segmenter``; Dice, NSD at 2 mm and HD95 (MONAI metrics) per structure, and the rate of
non-empty results for structures that are absent from the volume. Writes ``slice_results.csv``,
``volume_results.csv``, ``summary.md``, ``metrics.json`` and plots into ``<out>``.
"""

import argparse
import csv
import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from TextSegmentLib.imaging import reorientation_for, to_canonical

from .config import load_config
from .metrics import dice, hd95, nsd
from .prepare.cache import prepare_case
from .prepare.run import load_manifest
from .prepare.sources import canonical, read_image, read_layer
from .prompting import PromptBank
from .report import write_plots, write_summary
from .vocabulary import Structure

log = logging.getLogger("training.evaluate")


def _structures(cfg: Dict) -> List[Structure]:
    manifest = load_manifest(cfg["prepare"]["cache"])
    all_s = [Structure.from_dict(s) for s in manifest["structures"]]
    names = cfg.get("evaluate", {}).get("structures")
    return [s for s in all_s if not names or s.name in names], all_s, manifest


@torch.no_grad()
def slice_protocol(model, cfg: Dict, out: Path, max_slices: int = 24, max_negatives: int = 8) -> List[Dict]:
    """Per-slice Dice/NSD (positives) and false positives (negatives) for every eval case and structure."""
    chosen, all_s, manifest = _structures(cfg)
    size = manifest["image_size"]
    min_px = int(cfg.get("train", {}).get("data", {}).get("min_pixels", manifest["min_pixels"]))
    bank = PromptBank()
    eval_dir = Path(cfg["prepare"]["cache"]) / "eval"
    rows = []
    for case in cfg.get("evaluate", {}).get("cases", []):
        entry = prepare_case(case, all_s, eval_dir, size)
        cdir = eval_dir / case["id"]
        counts = np.load(cdir / "counts.npy")
        layers = {n: np.load(cdir / f"layer_{n}.npy", mmap_mode="r") for n in entry["layers"]}
        spacing = entry["planes"]["axial"]["spacing_mm"]
        for s in chosen:
            j = all_s.index(s)
            if counts[0, j] < 0:
                continue
            window = s.ct_window if entry["modality"] == "CT" else "mr"
            images = np.load(cdir / f"image_{window if window in entry['windows'] else entry['windows'][0]}.npy")
            pos = np.flatnonzero(counts[:, j] >= min_px)
            neg = np.flatnonzero((counts[:, j] == 0) & (counts.max(axis=1) > 0))
            pos = pos[np.linspace(0, len(pos) - 1, min(max_slices, len(pos))).astype(int)] if len(pos) else pos
            neg = neg[np.linspace(0, len(neg) - 1, min(max_negatives, len(neg))).astype(int)] if len(neg) else neg
            for kind, prompts in (("canonical", [s.name]), ("heldout", [t.format(name=s.name) for t in bank.heldout])):
                ks = np.concatenate([pos, neg]).astype(int)
                if not len(ks):
                    continue
                texts = [prompts[i % len(prompts)] for i in range(len(ks))]
                if model.config.slice_context:  # 2.5D: slices k-1, k, k+1 as the three channels
                    near = [np.clip(ks + d, 0, len(images) - 1) for d in (-1, 0, 1)]
                    img = torch.from_numpy(np.stack([images[i] for i in near], axis=1).astype(np.float32))
                else:
                    img = torch.from_numpy(np.repeat(images[ks][:, None], 3, axis=1).astype(np.float32))
                res = _predict(model, img, texts)
                for i, k in enumerate(ks):
                    gt = np.zeros((size, size), bool)
                    for layer, values in s.sources.items():
                        if layer in layers:
                            gt |= np.isin(layers[layer][k], values)
                    pred = res["masks"][i]
                    row = {
                        "case": case["id"],
                        "modality": entry["modality"],
                        "structure": s.name,
                        "slice": int(k),
                        "prompt_kind": kind,
                        "prompt": texts[i],
                        "prompt_words": len(texts[i].split()),
                        "present": bool(i < len(pos)),
                        "presence_prob": round(float(res["presence"][i]), 4),
                    }
                    if row["present"]:
                        row["dice"] = round(dice(pred, gt), 4)
                        row["nsd_2mm"] = round(nsd(pred, gt, spacing, 2.0), 4)
                    else:
                        row["false_positive"] = bool(row["presence_prob"] > 0.5 and pred.any())
                    rows.append(row)
        log.info("slice protocol: %s done", case["id"])
    _write_csv(out / "slice_results.csv", rows)
    return rows


def _predict(model, images: torch.Tensor, texts: Sequence[str], batch: int = 16) -> Dict:
    masks, presence = [], []
    for i in range(0, len(texts), batch):
        emb = model.encode_image(images[i : i + batch])
        o = model.decode(emb, text=list(texts[i : i + batch]))
        masks.append((o.masks[:, 0] > 0).cpu().numpy())
        presence.append(torch.sigmoid(o.presence[:, 0]).cpu().numpy())
    return {"masks": np.concatenate(masks), "presence": np.concatenate(presence)}


def volume_protocol(model, cfg: Dict, out: Path, device: str = "cpu") -> List[Dict]:
    """Whole-volume Dice, NSD@2mm, HD95 through the engine; absent structures -> false-positive rate."""
    from TextSegmentLib.engine import Segmenter

    chosen, _, _ = _structures(cfg)
    ev = cfg.get("evaluate", {})
    segmenter = Segmenter(model=model, device=device)
    rows = []
    for case in ev.get("cases", []):
        image = read_image(case["image"])
        vol = canonical(image)
        layers = {name: read_layer(spec, image) for name, spec in case.get("layers", {}).items()}
        present = [s for s in chosen if any(layer in layers for layer in s.sources)]
        for s in chosen:
            if s not in present:
                why = f"its label layers {sorted(s.sources)} are not among the case's layers {sorted(layers)}"
                log.warning("%s: structure %r is not evaluated: %s; name the case's layer as in the training config",
                            case["id"], s.name, why)  # fmt: skip
                rows.append({"case": case["id"], "structure": s.name, "skipped": why})
        absent = list(ev.get("absent", []))
        prompts = [s.name for s in present] + absent
        result = segmenter.segment(image, prompts, modality=case.get("modality"))
        reo = reorientation_for(image.GetDirection())
        spacing = (vol.spacing[2], vol.spacing[1], vol.spacing[0])
        for i, prompt in enumerate(prompts):
            pred = np.ascontiguousarray(to_canonical(result.mask(i), reo))
            report = result.segments[i]
            row = {
                "case": case["id"],
                "modality": case.get("modality", ""),
                "structure": prompt,
                "found": bool(report.found),
                "volume_ml": round(float(report.volume_ml), 3),
                "seconds": round(float(report.seconds), 3),
            }
            if i < len(present):
                s = present[i]
                gt = np.zeros(vol.array.shape, bool)
                for layer, values in s.sources.items():
                    if layer in layers:
                        gt |= np.isin(layers[layer], values)
                row.update(
                    present=True,
                    dice=round(dice(pred, gt), 4),
                    nsd_2mm=round(nsd(pred, gt, spacing, 2.0), 4),
                    hd95_mm=round(hd95(pred, gt, spacing), 2),
                )
            else:
                row.update(present=False, false_positive=bool(pred.any()))
            rows.append(row)
        log.info("3D protocol: %s done in %.1f s", case["id"], result.info.get("seconds", 0))
    _write_csv(out / "volume_results.csv", rows)
    return rows


def _write_csv(path: Path, rows: List[Dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields: List[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def evaluate(
    model, cfg: Dict, out: Path, protocols: Sequence[str] = ("slice", "3d"), device: str = "cpu", max_slices: int = 24
) -> Dict:
    """Run the protocols, write CSVs, the markdown summary, plots and ``metrics.json``; returns the metrics."""
    out.mkdir(parents=True, exist_ok=True)
    model = model.to(device).eval()
    slice_rows = slice_protocol(model, cfg, out, max_slices) if "slice" in protocols else []
    volume_rows = volume_protocol(model, cfg, out, device) if "3d" in protocols else []
    metrics = write_summary(out / "summary.md", slice_rows, volume_rows)
    write_plots(out, slice_rows)
    with open(out / "metrics.json", "w", encoding="utf-8") as fh:
        json.dump(metrics, fh, indent=2)
    return metrics


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Evaluate a TextSegment model (slice and 3D protocols).")
    parser.add_argument("--config", required=True)
    parser.add_argument("--run", help="run folder with checkpoint.pt (default training/runs/<config name>)")
    parser.add_argument("--bundle", help="evaluate an exported bundle instead of a run")
    parser.add_argument("--out", help="output folder (default <run>/eval)")
    parser.add_argument("--protocol", action="append", choices=["slice", "3d"], help="default: both")
    parser.add_argument("--max-slices", type=int, default=24, help="positive slices per structure (slice protocol)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = load_config(args.config)
    run = Path(args.run or Path("training/runs") / cfg["name"])
    if args.bundle:
        from TextSegmentLib.checkpoint import load_bundle

        model = load_bundle(args.bundle)
    else:
        from .export import load_trained_model

        model = load_trained_model(cfg, run)[0]
    out = Path(args.out or (run / "eval"))
    metrics = evaluate(model, cfg, out, args.protocol or ("slice", "3d"), args.device, args.max_slices)
    print((out / "summary.md").read_text(encoding="utf-8"))
    print(json.dumps(metrics.get("overall", {}), indent=2))


if __name__ == "__main__":
    main()
