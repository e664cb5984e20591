"""Model benchmark: parameters per part, GFLOPs per slice, ms per slice for encode and decode, peak memory.

Run:  .venv/bin/python benchmarks/model.py [--repeats 5] [--configs default lite]
Prints a table: median of ``--repeats`` runs at batch 1 and 8 on this machine's CPU (or the GPU with --device cuda).
"Naive" is the one-call forward (encode + decode) per prompt; "cached" is decode from stored embeddings.
"""

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from TextSegmentLib.device import resolve_device  # noqa: E402
from TextSegmentLib.model import build_model  # noqa: E402

CONFIGS = {
    "default": {},
    "lite": {
        "image_size": 128,
        "embed_dim": 128,
        "encoder_dims": [48, 96, 128, 192],
        "encoder_heads": [2, 3, 4, 6],
        "decoder_mlp_dim": 512,
    },
}


def gflops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def median_ms(fn, repeats: int, per: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1000 / per)
    return statistics.median(times)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(name: str, overrides: dict, repeats: int, device: torch.device) -> list:
    torch.manual_seed(0)
    model = build_model(overrides or None).to(device).eval().requires_grad_(False)
    cfg = model.config
    s = cfg.image_size
    rows = []
    parts = {n: sum(p.numel() for p in c.parameters()) / 1e6 for n, c in model.named_children()}
    total = sum(parts.values())
    text = model.encode_text(["left hippocampus"])
    box = torch.tensor([[s * 0.2, s * 0.2, s * 0.6, s * 0.6]])
    with torch.no_grad():
        x1 = torch.rand(1, 3, s, s, device=device) * 255
        emb1 = model.encode_image(x1)
        enc_gf = gflops(lambda: model.encode_image(x1))
        dec_gf = gflops(lambda: model.decode(emb1, text=text, boxes=box))
        for batch in (1, 8):
            x = torch.rand(batch, 3, s, s, device=device) * 255
            emb = model.encode_image(x)
            enc = median_ms(lambda x=x: model.encode_image(x), repeats, batch, device)
            dec = median_ms(lambda e=emb: model.decode(e, text=text, boxes=box), repeats, batch, device)
            naive = median_ms(lambda x=x: model(x, text=text, boxes=box), repeats, batch, device)
            rows.append((name, s, cfg.embed_dim, batch, total, enc_gf, dec_gf, enc, dec, naive, naive / dec, rss_mb()))
    print(f"\n{name}: parameters per part (M): " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = resolve_device(args.device)
    rows = []
    for name in args.configs:
        rows += bench(name, CONFIGS[name], args.repeats, device)
    print(f"\ndevice: {device}, torch threads: {torch.get_num_threads()}, median of {args.repeats} runs")
    head = (
        "| config | input | D | batch | params (M) | encode GFLOPs/slice | decode GFLOPs/slice | encode ms/slice "
        "| decode ms/slice (cached) | naive forward ms/slice | naive / cached | peak RSS MB |"
    )
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        print(
            f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.2f} | {r[5]:.2f} | {r[6]:.2f} | {r[7]:.1f} | {r[8]:.1f} "
            f"| {r[9]:.1f} | {r[10]:.1f}x | {r[11]:.0f} |"
        )


if __name__ == "__main__":
    main()
