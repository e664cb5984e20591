"""Whole-volume engine timings: first prompt, further prompts, refinements, peak memory, against the naive path.

    python benchmarks/volume.py                       # both configs, brain MRI + 512x512x300 CT, 3 runs
    python benchmarks/volume.py --configs lite --volumes brain --runs 1

Volumes: the Colin27 T1 brain MRI (181 x 217 x 181, 1 mm; Debian mricron-data) and a generated 512 x 512 x 300 CT
phantom (0.7 x 0.7 x 1.5 mm, int16 HU). Models have random weights (timings do not depend on them); decoding uses
``presence_threshold=0`` so every slice is upscaled (the worst case). Each (config, volume) runs in its own process
so that its peak RSS is its own. "absent, stride 4" is a further prompt whose target is on no slice, decoded with
``slice_stride=4`` (the cheapest case). "naive" re-encodes the volume for a further prompt (``use_cache=False``), as an
engine without an embedding cache would; the ratio is naive / cached further prompt, measured in the same run.
Timings are medians over ``--runs`` runs (each with a fresh Segmenter, so the first prompt includes encoding).
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

CONFIGS = {
    "default": {},  # 256 x 256 input, 256-d embeddings (the paper's setting)
    "lite": {"image_size": 128, "embed_dim": 128, "decoder_heads": 8, "decoder_mlp_dim": 512},
}


def _shipped_architecture() -> dict:
    """Architecture of the embedded default model (its card), so its real speed is measured too."""
    cards = sorted((ROOT / "Resources" / "models").glob("*/model.json"))
    return json.loads(cards[-1].read_text())["architecture"] if cards else {}


CONFIGS["shipped"] = _shipped_architecture()  # the embedded default model's architecture (128 input)
PROMPTS = {
    "brain": ["left hippocampus", "right caudate nucleus", "brain"],
    "ct": ["liver", "spleen", "right kidney"],  # one CT window (soft tissue): a new window means a new encoding
}


def brain_volume():
    import SimpleITK as sitk

    return sitk.ReadImage("/usr/share/mricron/templates/ch2.nii.gz")


def ct_volume(shape=(300, 512, 512)):
    """A 512 x 512 x 300 body CT phantom in HU: air, soft tissue, lungs, a spine, a liver, noise."""
    import numpy as np
    import SimpleITK as sitk

    k, j, i = shape
    yy, xx = np.meshgrid(np.linspace(-1, 1, j), np.linspace(-1, 1, i), indexing="ij")
    rng = np.random.default_rng(0)
    arr = np.empty(shape, np.int16)
    for z in range(k):
        t = z / k
        sl = np.full((j, i), -1000, np.int16)
        body = (xx / 0.85) ** 2 + (yy / (0.6 + 0.05 * t)) ** 2 < 1
        sl[body] = 40
        if t > 0.45:
            sl[((xx - 0.35) / 0.3) ** 2 + ((yy + 0.05) / 0.4) ** 2 < 1] = -850
            sl[((xx + 0.35) / 0.3) ** 2 + ((yy + 0.05) / 0.4) ** 2 < 1] = -850
        elif t > 0.25:
            sl[((xx + 0.3) / 0.35) ** 2 + ((yy + 0.1) / 0.3) ** 2 < 1] = 60
        sl[(xx / 0.08) ** 2 + ((yy - 0.42) / 0.08) ** 2 < 1] = 700
        arr[z] = sl + rng.normal(0, 10, (j, i)).astype(np.int16)
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing((0.7, 0.7, 1.5))
    return image


def worker(config: str, volume_name: str, runs: int, threads: int) -> dict:
    import torch

    from TextSegmentLib.engine import Segmenter
    from TextSegmentLib.model import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(CONFIGS[config]).eval()
    image = brain_volume() if volume_name == "brain" else ct_volume()
    prompts = PROMPTS[volume_name]
    model.encode_text(prompts)  # load the text encoder once (not part of a volume's cost)
    opts = {"presence_threshold": 0.0}
    rows = {"first": [], "further": [], "absent_stride4": [], "naive": [], "refine": [], "refine_prop5": []}
    n = image.GetSize()[2]
    for _ in range(runs):
        seg = Segmenter(model, device="cpu", batch_size=8)
        t = time.perf_counter()
        result = seg.segment(image, prompts[:1], **opts)
        rows["first"].append(time.perf_counter() - t)
        for p in prompts[1:]:
            t = time.perf_counter()
            seg.segment(image, [p], **opts)
            rows["further"].append(time.perf_counter() - t)
        t = time.perf_counter()
        seg.segment(image, prompts[1:2], presence_threshold=1.0, slice_stride=4)
        rows["absent_stride4"].append(time.perf_counter() - t)
        size = image.GetSize()
        box = (size[0] // 3, size[1] // 3, 2 * size[0] // 3, 2 * size[1] // 3)
        for k in (n // 3, n // 2, 2 * n // 3):
            t = time.perf_counter()
            seg.refine(result, 0, k, box=box, max_propagation=0)
            rows["refine"].append(time.perf_counter() - t)
        t = time.perf_counter()
        seg.refine(result, 0, n // 2, box=box, max_propagation=5)
        rows["refine_prop5"].append(time.perf_counter() - t)
        t = time.perf_counter()
        seg.segment(image, prompts[1:2], use_cache=False, **opts)
        rows["naive"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in rows.items()}
    return {
        "config": config,
        "image_size": model.config.image_size,
        "embed_dim": model.config.embed_dim,
        "volume": volume_name,
        "size": list(image.GetSize()),
        "runs": runs,
        **{k: round(v, 3) for k, v in med.items()},
        "naive_ratio": round(med["naive"] / med["further"], 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="lite,default")
    parser.add_argument("--volumes", default="brain,ct")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--worker", nargs=2, metavar=("CONFIG", "VOLUME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.runs, args.threads)))
        return 0
    results = []
    for config in args.configs.split(","):
        for volume in args.volumes.split(","):
            cmd = [sys.executable, __file__, "--worker", config, volume, "--runs", str(args.runs)]
            cmd += ["--threads", str(args.threads)]
            proc = subprocess.run(
                cmd,
                capture_output=True,
                encoding="utf-8",
                errors="replace",
                env=dict(os.environ, PYTHONWARNINGS="ignore"),
            )
            if proc.returncode:
                print(proc.stderr[-2000:], file=sys.stderr)
                return proc.returncode
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"done: {config} {volume}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    head = "| config | volume | slices | first prompt s | further prompt s | absent, stride 4 s | naive s |"
    head += " naive/further | refine s | refine+5 s | peak RSS GB |"
    print(head)
    print("|" + "---|" * 11)
    for r in results:
        print(
            f"| {r['config']} ({r['image_size']}/{r['embed_dim']}) | {r['volume']} {'x'.join(map(str, r['size']))} "
            f"| {r['size'][2]} | {r['first']:.1f} | {r['further']:.2f} | {r['absent_stride4']:.2f} | {r['naive']:.1f} "
            f"| {r['naive_ratio']:.1f}x "
            f"| {r['refine']:.3f} | {r['refine_prop5']:.2f} | {r['peak_rss_gb']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
