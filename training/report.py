"""Evaluation reports: a markdown table per structure and modality, metrics for the model card, and plots
(per-structure box plots of slice Dice; Dice versus prompt length, as in seed 000 table 3)."""

from pathlib import Path
from typing import Dict, List, Optional

import numpy as np


def _mean(values) -> Optional[float]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    return round(float(np.mean(vals)), 4) if vals else None


def _clean(value):
    """NaN -> None, recursively, so metrics are strict JSON."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def summarise(slice_rows: List[Dict], volume_rows: List[Dict]) -> Dict:
    """Per-structure means of every metric, plus overall means; the dict stored in ``metrics.json`` and the card."""
    out: Dict = {"slice": {}, "volume": {}, "overall": {}}
    for r in slice_rows:
        key = f"{r['structure']} ({r['modality']})"
        d = out["slice"].setdefault(key, {"dice": [], "nsd_2mm": [], "heldout_dice": [], "fp": []})
        if r["present"]:
            (d["dice"] if r["prompt_kind"] == "canonical" else d["heldout_dice"]).append(r["dice"])
            if r["prompt_kind"] == "canonical":
                d["nsd_2mm"].append(r["nsd_2mm"])
        else:
            d["fp"].append(float(r["false_positive"]))
    for key, d in out["slice"].items():
        out["slice"][key] = {
            "dice": _mean(d["dice"]),
            "nsd_2mm": _mean(d["nsd_2mm"]),
            "heldout_dice": _mean(d["heldout_dice"]),
            "fp_rate": _mean(d["fp"]),
            "n": len(d["dice"]),
        }
    for r in volume_rows:
        key = f"{r['structure']} ({r['modality'] or 'auto'})"
        if r.get("present"):
            out["volume"][key] = {"dice": r["dice"], "nsd_2mm": r["nsd_2mm"], "hd95_mm": r["hd95_mm"]}
        else:
            out["volume"][key] = {"false_positive": r["false_positive"]}
    s = out["slice"].values()
    v = [x for x in out["volume"].values() if "dice" in x]
    fps = [float(x["false_positive"]) for x in out["volume"].values() if "false_positive" in x]
    out["overall"] = {
        "slice_dice": _mean([x["dice"] for x in s]),
        "slice_nsd_2mm": _mean([x["nsd_2mm"] for x in s]),
        "slice_heldout_dice": _mean([x["heldout_dice"] for x in s]),
        "slice_fp_rate": _mean([x["fp_rate"] for x in s]),
        "volume_dice": _mean([x["dice"] for x in v]),
        "volume_nsd_2mm": _mean([x["nsd_2mm"] for x in v]),
        "volume_hd95_mm": _mean([x["hd95_mm"] for x in v]),
        "volume_absent_fp_rate": _mean(fps),
    }
    return _clean(out)


def write_summary(path: Path, slice_rows: List[Dict], volume_rows: List[Dict]) -> Dict:
    """Write ``summary.md`` and return the metrics dict."""
    m = summarise(slice_rows, volume_rows)
    lines = ["# Evaluation", "", "## Slice protocol (seed 000: Dice, NSD at 2 mm; slices with the structure)", ""]
    lines += [
        "| structure | n | Dice | NSD 2 mm | Dice, held-out phrasings | FP rate (absent slices) |",
        "|---|---|---|---|---|---|",
    ]
    for k, d in sorted(m["slice"].items()):
        lines.append(f"| {k} | {d['n']} | {d['dice']} | {d['nsd_2mm']} | {d['heldout_dice']} | {d['fp_rate']} |")
    lines += [
        "",
        "## 3D protocol (whole volume through the engine)",
        "",
        "| structure | Dice | NSD 2 mm | HD95 mm | false positive (absent) |",
        "|---|---|---|---|---|",
    ]
    for k, d in sorted(m["volume"].items()):
        lines.append(
            f"| {k} | {d.get('dice', '')} | {d.get('nsd_2mm', '')} | {d.get('hd95_mm', '')} | "
            f"{d.get('false_positive', '')} |"
        )
    lines += ["", "## Overall", ""] + [f"- {k}: {v}" for k, v in m["overall"].items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return m


def write_plots(out: Path, slice_rows: List[Dict]) -> None:
    """``dice_boxplot.png`` (per structure) and ``dice_vs_prompt_length.png``."""
    rows = [r for r in slice_rows if r["present"]]
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({r["structure"] for r in rows})
    data = [[r["dice"] for r in rows if r["structure"] == n and r["prompt_kind"] == "canonical"] for n in names]
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(names) + 2), 4.5))
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("slice Dice")
    ax.set_ylim(0, 1)
    ax.set_title("Slice Dice per structure (canonical prompt)")
    fig.tight_layout()
    fig.savefig(out / "dice_boxplot.png", dpi=120)
    plt.close(fig)
    bins = [(1, 2), (3, 4), (5, 6), (7, 100)]
    labels, means = [], []
    for lo, hi in bins:
        vals = [r["dice"] for r in rows if lo <= r["prompt_words"] <= hi]
        if vals:
            labels.append(f"{lo}-{hi}" if hi < 100 else f">={lo}")
            means.append(float(np.mean(vals)))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(labels, means)
    ax.set_xlabel("prompt length (words)")
    ax.set_ylabel("mean slice Dice")
    ax.set_ylim(0, 1)
    ax.set_title("Dice versus prompt length")
    fig.tight_layout()
    fig.savefig(out / "dice_vs_prompt_length.png", dpi=120)
    plt.close(fig)
