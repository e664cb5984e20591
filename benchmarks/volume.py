"""Whole-volume engine speed against the hardware floor, for one view and for three views.

    python benchmarks/volume.py                              # shipped model, brain + CT, 1 and 3 views, 3 runs
    python benchmarks/volume.py --volumes brain --views 3 --runs 1
    python benchmarks/volume.py --model path/to/bundle
    python benchmarks/volume.py --precision float32,auto    # float32 against the engine's default precision

Floor = the FLOPs that the engine's own model calls perform, counted with ``torch.utils.flop_counter.FlopCounterMode``
around a real ``Segmenter`` call, divided by the fp32 matmul rate (2048 x 2048, the same threads) measured in the
same run; "x floor" = time / floor. With bfloat16 (the engine's default where the CPU computes it natively) the model
work runs in bf16, whose matmul rate is measured too: "x bf16 floor" = time / (FLOPs / bf16 rate), the stricter
ratio for that precision. Times are medians over ``--runs`` runs, each with a fresh ``Segmenter`` (so the
first prompt includes encoding every slice of every view); the FLOP counts come from one extra counted run.

Volumes (real targets, found by the trained model):

- brain: the MNI152-2009 T1 shipped with nilearn (197 x 233 x 189, 1 mm); first prompt "left hippocampus",
  further prompt "right putamen" (decoded from the cached embeddings), naive = the further prompt re-encoding
  (``use_cache=False``); refinements: a box on one slice of each plane the model knows (no propagation), and one
  propagated up to 5 slices each way; "precompute" encodes every slice of the views ahead of the first prompt (what
  the Slicer module does on selecting a volume), then the first prompt is timed again.
- ct: the InVesalius head CT placed in a 512 x 512 x 300 body-sized CT (0.7 x 0.7 x 1.5 mm, air around it, the
  head on about a third of the slices); first prompt "skull", further prompt "calvarium" (same bone window).

Each volume runs in its own process, so its peak RSS is its own.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS = {"brain": ("left hippocampus", "right putamen"), "ct": ("skull", "calvarium")}


def default_model() -> Path:
    """The embedded default model (the newest version under TextSegmentLib/resources/models)."""

    def version(card: Path):
        return tuple(int(p) if p.isdigit() else 0 for p in card.parent.name.rsplit("-v", 1)[-1].split("."))

    return max((ROOT / "TextSegmentLib" / "resources" / "models").glob("*/model.json"), key=version).parent


def brain_volume():
    import SimpleITK as sitk

    from TextSegmentLib.demo import demo_volume

    return sitk.ReadImage(str(demo_volume()))


def ct_volume():
    """The InVesalius head CT (108 x 256 x 256) centred in a 512 x 512 x 300 CT of air, 0.7 x 0.7 x 1.5 mm."""
    import numpy as np
    import SimpleITK as sitk

    from training.prepare.sources import read_invesalius

    head = read_invesalius(Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3"))[0]
    grid = sitk.Image([512, 512, 300], sitk.sitkInt16)
    grid.SetSpacing((0.7, 0.7, 1.5))
    centre = np.array(head.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in head.GetSize()]))
    extent = np.array([511 * 0.7, 511 * 0.7, 299 * 1.5])
    grid.SetOrigin(tuple(centre - extent / 2))
    return sitk.Resample(head, grid, sitk.Transform(), sitk.sitkLinear, -1024, sitk.sitkInt16)


def matmul_rate(threads: int, n: int = 2048, repeats: int = 5, dtype=None) -> float:
    """Matmul GFLOP/s (fp32 unless ``dtype``) on this machine now (median of ``repeats``)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        rates.append(2 * n**3 / (time.perf_counter() - t) / 1e9)
    return statistics.median(rates)


def counted(fn) -> float:
    """GFLOPs of the torch calls inside ``fn()``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def worker(model_dir: str, volume_name: str, views: int, runs: int, threads: int, precision: str = "auto") -> dict:
    import torch

    from TextSegmentLib.checkpoint import load_bundle
    from TextSegmentLib.engine import Segmenter

    torch.set_num_threads(threads)
    model = load_bundle(Path(model_dir), torch.device("cpu")).requires_grad_(False)
    planes = ("axial", "coronal", "sagittal") if views == 3 else ("axial",)
    image = brain_volume() if volume_name == "brain" else ct_volume()
    first, further = PROMPTS[volume_name]
    model.encode_text([first, further])  # the text encoder loads once per process, not per volume
    for module in vars(model.text_encoder).values():  # FlopCounterMode's module hooks need frozen parameters
        if isinstance(module, torch.nn.Module):
            module.requires_grad_(False)
    opts = {"views": planes}
    refine_planes = [p for p in planes if p in Segmenter(model, device="cpu").refine_planes()] or [planes[0]]
    size = image.GetSize()
    centre = [s // 2 for s in size]
    corners = ([s // 3 for s in size], [2 * s // 3 for s in size])
    times = {k: [] for k in ("first", "further", "naive", "refine", "refine5")}
    found = {}
    for _ in range(runs):
        seg = Segmenter(model, device="cpu", batch_size=16, precision=precision)
        t = time.perf_counter()
        result = seg.segment(image, [first], **opts)
        times["first"].append(time.perf_counter() - t)
        t = time.perf_counter()
        res2 = seg.segment(image, [further], **opts)
        times["further"].append(time.perf_counter() - t)
        found = {first: result.segments[0].volume_ml, further: res2.segments[0].volume_ml}
        for plane in refine_planes:
            t = time.perf_counter()
            seg.refine(result, 0, tuple(centre), box=corners, plane=plane, max_propagation=0)
            times["refine"].append(time.perf_counter() - t)
        t = time.perf_counter()
        seg.refine(result, 0, tuple(centre), box=corners, plane=planes[0], max_propagation=5)
        times["refine5"].append(time.perf_counter() - t)
        t = time.perf_counter()
        seg.segment(image, [further], use_cache=False, **opts)
        times["naive"].append(time.perf_counter() - t)
    prepared = {"precompute": [], "first_after": []}
    for _ in range(runs):  # Slicer prepares a selected volume in the background: the first prompt then only decodes
        seg = Segmenter(model, device="cpu", batch_size=16, precision=precision)
        t = time.perf_counter()
        seg.precompute(image, views=planes)
        prepared["precompute"].append(time.perf_counter() - t)
        t = time.perf_counter()
        seg.segment(image, [first], **opts)
        prepared["first_after"].append(time.perf_counter() - t)
    rate = matmul_rate(threads)
    dtype = seg.dtype
    rate_low = matmul_rate(threads, dtype=dtype) if dtype != torch.float32 else rate
    seg = Segmenter(model, device="cpu", batch_size=16, precision=precision)
    flops = {"first": counted(lambda: seg.segment(image, [first], **opts))}
    flops["further"] = counted(lambda: seg.segment(image, [further], **opts))
    result = seg.segment(image, [first], **opts)
    flops["refine"] = counted(
        lambda: seg.refine(result, 0, tuple(centre), box=corners, plane=planes[0], max_propagation=0)
    )
    flops["naive"] = counted(lambda: seg.segment(image, [further], use_cache=False, **opts))
    med = {k: statistics.median(v) for k, v in times.items() if v}
    rows = {}
    for k in ("first", "further", "naive", "refine"):
        floor = flops[k] / rate
        rows[k] = {"s": round(med[k], 3), "gflop": round(flops[k], 1), "floor_s": round(floor, 3),
                   "x_floor": round(med[k] / max(floor, 1e-9), 2),
                   "x_low_floor": round(med[k] * rate_low / max(flops[k], 1e-9), 2)}  # fmt: skip
    return {
        "model": Path(model_dir).name,
        "volume": volume_name,
        "size": list(size),
        "views": len(planes),
        "runs": runs,
        "threads": threads,
        "precision": str(dtype).replace("torch.", ""),
        "matmul_gflops": round(rate, 1),
        "matmul_gflops_precision": round(rate_low, 1),
        "rows": rows,
        "refine5_s": round(med["refine5"], 3),
        "precompute_s": round(statistics.median(prepared["precompute"]), 3),
        "first_after_precompute_s": round(statistics.median(prepared["first_after"]), 3),
        "naive_over_further": round(med["naive"] / med["further"], 1),
        "found_ml": {k: round(v, 1) for k, v in found.items()},
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
    }


def table(results) -> str:
    lines = [
        "| volume | views | precision | case | time s | GFLOP | floor s | x floor | x bf16 floor | matmul GFLOP/s "
        "fp32 / bf16 | peak RSS GB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for case, row in r["rows"].items():
            lines.append(
                f"| {r['volume']} {'x'.join(map(str, r['size']))} | {r['views']} | {r['precision']} | {case} "
                f"| {row['s']:.3f} | {row['gflop']:.1f} | {row['floor_s']:.3f} | {row['x_floor']:.2f} "
                f"| {row['x_low_floor'] if r['precision'] == 'bfloat16' else '-'} | {r['matmul_gflops']:.0f} / "
                f"{r['matmul_gflops_precision'] if r['precision'] == 'bfloat16' else '-'} | {r['peak_rss_gb']:.2f} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(default_model()), help="bundle folder (default: the embedded model)")
    parser.add_argument("--volumes", default="brain,ct")
    parser.add_argument("--views", default="1,3", help="comma-separated: 1 (axial) and/or 3 (all planes)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--precision", default="auto", help="comma-separated: auto, float32, bfloat16")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--worker", nargs=3, metavar=("VOLUME", "VIEWS", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker(args.model, args.worker[0], int(args.worker[1]), args.runs, args.threads, args.worker[2])
        print(json.dumps(result))
        return 0
    results = []
    splits = (args.volumes.split(","), args.views.split(","), args.precision.split(","))
    cases = [(v, n, p) for v in splits[0] for n in splits[1] for p in splits[2]]
    for volume, views, precision in cases:
        cmd = [sys.executable, __file__, "--worker", volume, views, precision, "--runs", str(args.runs)]
        cmd += ["--threads", str(args.threads), "--model", args.model]
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        proc = subprocess.run(cmd, capture_output=True, encoding="utf-8", errors="replace", env=env)
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"done: {volume} x{views} {precision}: found {r['found_ml']} mL, refine+5 {r['refine5_s']} s, "
              f"naive/further {r['naive_over_further']}x, precompute {r['precompute_s']} s then first prompt "
              f"{r['first_after_precompute_s']} s", file=sys.stderr)  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
