"""Train a TextSegment model on a slice cache: one script for a CPU, one GPU, or many GPUs/nodes via ``torchrun``.

    python -m training.train --config training/configs/brain_lite_128.yaml [--out DIR] [--steps N] [--minutes M]
    python -m training.train --config training/configs/brain_v2_128.yaml --init TextSegmentLib/resources/models/<bundle>
    torchrun --nproc_per_node 4 -m training.train --config ...       # DDP (nccl on GPU, gloo on CPU)

Samples come from the slice cache (``prepare``) or, when the config has a ``bank`` section, from its bank of 3D
variants (training/bank.py: three planes, synthetic contrasts). ``--init BUNDLE`` starts a new run from a bundle's
weights (warm start; parameters the bundle lacks, e.g. a new decoder skip, keep their initialisation and are named
in the log). ``<out>/best.pt`` holds the weights with the best validation Dice (validation never uses the held-out
evaluation image).

Dice + focal + presence BCE + IoU regression; AdamW with linear warm-up then cosine decay (over steps, or over a
wall-clock budget with ``--minutes``); gradient clipping; bf16/fp16 autocast on GPU (inside the model); text
features computed once (frozen encoder). Resumable: ``<out>/checkpoint.pt`` holds model, optimiser, scaler, RNG
states, step and elapsed time, and every batch is a pure function of (seed, step), so a resumed run continues
exactly where it stopped. Logs: ``<out>/log.csv`` (train) and ``<out>/val.csv`` (quick validation).
"""

import argparse
import csv
import json
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.distributed as dist

from TextSegmentLib.device import resolve_device
from TextSegmentLib.model import build_model

from .bank import BankSampler
from .config import load_config
from .data import SliceSampler
from .intent import TrainingModule, intent_loss
from .losses import segmentation_loss
from .syncbn import convert_batchnorm
from .textcache import TextFeatureCache

log = logging.getLogger("training.train")
CHECKPOINT = "checkpoint.pt"


class StepBatches(torch.utils.data.Dataset):
    """Item ``i`` is this rank's share of the global batch of step ``start + i``."""

    def __init__(self, sampler: SliceSampler, start: int, steps: int, batch: int, rank: int, world: int, seed: int):
        self.sampler, self.start, self.steps = sampler, start, steps
        self.batch, self.rank, self.world, self.seed = batch, rank, world, seed

    def __len__(self) -> int:
        return max(self.steps - self.start, 0)

    def __getitem__(self, i: int) -> Dict:
        step = self.start + i
        per_rank = self.batch // self.world
        idx = range(self.rank * per_rank, (self.rank + 1) * per_rank)
        p_prior = float(self.sampler.opt.get("p_mask_prompt", 0.0))
        with_prior = p_prior > 0 and np.random.default_rng([self.seed, step, 7]).random() < p_prior
        samples = [self.sampler.sample(sample_seed(self.seed, step, j), with_prior=with_prior) for j in idx]
        return collate(samples)


def sample_seed(seed: int, step: int, index: int) -> int:
    """The seed of one sample of the global batch (independent of how the batch is split over processes)."""
    return (seed * 1_000_003 + step) * 4096 + index


def collate(samples) -> Dict:
    return {
        "images": torch.from_numpy(np.stack([s.image for s in samples])),
        "masks": torch.from_numpy(np.stack([s.mask for s in samples]).astype(np.float32)),
        "present": torch.tensor([s.present for s in samples], dtype=torch.float32),
        "boxes": torch.from_numpy(np.stack([s.box for s in samples])),
        "points": torch.from_numpy(np.stack([s.points for s in samples])),
        "labels": torch.from_numpy(np.stack([s.labels for s in samples])),
        "prompts": [s.prompt for s in samples],
        "structures": [s.structure for s in samples],
        "priors": (
            torch.from_numpy(np.stack([s.prior for s in samples]))[:, None]
            if all(s.prior is not None for s in samples)
            else None
        ),
    }


def lr_factor(progress: float, warmup: float, min_ratio: float) -> float:
    """Linear warm-up over the first ``warmup`` fraction, then cosine decay to ``min_ratio``."""
    if progress < warmup:
        return max(progress / max(warmup, 1e-8), 1e-3)
    t = min((progress - warmup) / max(1 - warmup, 1e-8), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def setup_distributed(device_name: str):
    """(rank, world, device); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_name != "cpu"
        dist.init_process_group("nccl" if use_cuda else "gloo")
        if use_cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return rank, world, torch.device("cuda", local)
    return rank, world, resolve_device(device_name)


def run_forward(model, batch: Dict, text: TextFeatureCache, device):
    """(decoder output, intention logits or None) for a batch, through the model or its training wrapper."""
    emb = text.batch(batch["prompts"])
    out = model(
        batch["images"].to(device),
        text=emb,
        boxes=batch["boxes"].to(device),
        points=batch["points"].to(device),
        point_labels=batch["labels"].to(device),
        mask_inputs=batch["priors"].to(device) if batch.get("priors") is not None else None,
    )
    return out if isinstance(out, tuple) else (out, None)


@torch.no_grad()
def quick_validation(model, samples, text: TextFeatureCache, device, batch: int = 32) -> Dict[str, float]:
    """Dice of the thresholded mask per validation structure (text prompt = canonical name), and the mean."""
    was_training = model.training
    model.eval()
    per: Dict[str, List[float]] = {}
    for i in range(0, len(samples), batch):
        b = collate(samples[i : i + batch])
        out, _ = run_forward(model, b, text, device)
        logits = out.masks[:, 0].cpu()
        inter = ((logits > 0).float() * b["masks"]).flatten(1).sum(1)
        denom = (logits > 0).float().flatten(1).sum(1) + b["masks"].flatten(1).sum(1)
        dice = (2 * inter / denom.clamp(min=1)).tolist()
        for name, d in zip(b["structures"], dice):
            per.setdefault(name, []).append(d)
    model.train(was_training)
    result = {k: float(np.mean(v)) for k, v in per.items()}
    result["mean"] = float(np.mean(list(result.values()))) if result else 0.0
    return result


def make_sampler(cfg: Dict, split: str = "train", augment: bool = True):
    """The config's sampler: a variant bank when it has a ``bank`` section, else the slice cache."""
    tc = cfg.get("train", {})
    options = dict(tc.get("data", {}))
    if not augment:
        options["augment"] = None
    context = bool(cfg.get("model", {}).get("slice_context", False))
    if "bank" in cfg:
        return BankSampler(cfg["bank"]["dir"], options, split, context, cfg["bank"].get("variant_weights"))
    return SliceSampler(cfg["prepare"]["cache"], options, split, context)


def sample_dir(cfg: Dict) -> Path:
    """Where the samples (and the text feature cache) live."""
    return Path(cfg["bank"]["dir"] if "bank" in cfg else cfg["prepare"]["cache"])


def warm_start(model, bundle: Path) -> None:
    """Load a bundle's weights into ``model`` (shapes must match; parameters the bundle lacks keep their init)."""
    from TextSegmentLib.checkpoint import load_bundle

    state = load_bundle(Path(bundle), torch.device("cpu")).float().state_dict()
    own = model.state_dict()
    bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if bad:
        raise ValueError(f"--init {bundle}: shapes differ for {bad[:5]}; the bundle's architecture does not match")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"--init {bundle}: the model has no parameters {unexpected[:5]}")
    log.info(
        "warm start from %s; %d new parameter tensors keep their initialisation: %s",
        bundle,
        len(missing),
        sorted({k.rsplit(".", 2)[0] for k in missing}),
    )


def save_checkpoint(path: Path, model, optimizer, scaler, step: int, elapsed: float, cfg: Dict, extra=None) -> None:
    state = {
        "extra": extra or {},
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "step": step,
        "elapsed": elapsed,
        "config": cfg,
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, model, optimizer, scaler, heads=None):
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    missing = [name for name in (heads or {}) if name not in state.get("extra", {})]
    for name, module in (heads or {}).items():
        if name not in missing:
            module.load_state_dict(state["extra"][name])
    if missing:  # a head was switched on after this checkpoint: it and the optimiser moments start afresh
        log.warning("checkpoint has no %s head; starting it and the optimiser state afresh", missing)
    else:
        optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    return int(state["step"]), float(state.get("elapsed", 0.0))


def _append_csv(path: Path, row: Dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def write_warm_start(out: Path, bundle: Path) -> None:
    """Record which bundle a run started from (``warm_start.json``; the export copies it into the model card)."""
    card = json.loads((Path(bundle) / "model.json").read_text(encoding="utf-8"))
    info = {"bundle": f"{card.get('name')}-v{card.get('version')}", "steps": card.get("training_data", {}).get("steps")}
    (out / "warm_start.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")


def train(
    cfg: Dict,
    out: Path,
    device_name: str = "auto",
    steps: Optional[int] = None,
    minutes: Optional[float] = None,
    stop_after: Optional[int] = None,
    init: Optional[Path] = None,
) -> Path:
    """Run (or resume) training; returns the run folder. ``stop_after`` ends this call early at that step (to
    simulate an interruption); the schedule still follows ``steps``."""
    tc = cfg.get("train", {})
    rank, world, device = setup_distributed(device_name)
    seed = int(tc.get("seed", 0))
    torch.manual_seed(seed)
    if tc.get("threads"):
        torch.set_num_threads(int(tc["threads"]))
    total = int(steps or tc.get("steps", 1000))
    budget = minutes if minutes is not None else tc.get("minutes")
    batch = int(tc.get("batch_size", 16))
    if batch % world:
        raise ValueError(f"batch_size {batch} must be divisible by the number of processes {world}")
    cache = sample_dir(cfg)
    model_cfg = cfg.get("model", {})
    sampler = make_sampler(cfg, "train")
    if sampler.manifest["image_size"] != model_cfg.get("image_size", 256):
        raise ValueError(f"cache image size {sampler.manifest['image_size']} != model image_size")
    model = build_model(model_cfg)
    if init is not None and not (out / CHECKPOINT).exists():
        warm_start(model, init)
    model = model.to(device)
    if world > 1:  # batch statistics over the global batch (before the optimiser sees the parameters)
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            model = convert_batchnorm(model)
    text = TextFeatureCache.build(model, sampler.all_prompts(), Path(cache))
    val_samples = [v for v in _validation_set(cfg, sampler) if v.prompt in text.features]  # trained names only
    intent_weight = float(tc.get("intent_weight", 0.0))
    trainer = TrainingModule(model, len(sampler.structures) if intent_weight > 0 else 0).to(device)
    heads = {"intent": trainer.intent} if trainer.intent is not None else {}
    params = [p for p in trainer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=float(tc.get("lr", 1e-4)), betas=(0.9, 0.999), weight_decay=float(tc.get("weight_decay", 0.01))
    )
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / CHECKPOINT
    if init is not None and rank == 0 and not ckpt.exists():  # the lineage, for the exported model card
        write_warm_start(out, init)
    step, elapsed = load_checkpoint(ckpt, model, optimizer, scaler, heads) if ckpt.exists() else (0, 0.0)
    if step:
        log.info("resumed from %s at step %d", ckpt, step)
    # find_unused_parameters: the mask-prompt branch is idle in steps without mask inputs
    ddp = torch.nn.parallel.DistributedDataParallel(trainer, find_unused_parameters=True) if world > 1 else trainer
    data = StepBatches(sampler, step, total, batch, rank, world, seed)
    workers = int(tc.get("workers", 0))
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    weights = tc.get("loss_weights", {})
    warmup, min_ratio = float(tc.get("warmup", 0.03)), float(tc.get("min_lr_ratio", 0.02))
    base_lrs = [float(tc.get("lr", 1e-4))] * len(optimizer.param_groups)  # not the restored (scheduled) lr
    clip = float(tc.get("grad_clip", 1.0))
    log_every, ckpt_every = int(tc.get("log_every", 20)), int(tc.get("checkpoint_every", 200))
    val_every = int(tc.get("val_every", 500))
    t_start, seen, t_log = time.time() - elapsed, 0, time.time()
    bar = _progress(total, step, rank)
    model.train()
    for batch_data in loader:
        elapsed = time.time() - t_start
        progress = step / total
        if budget:
            progress = max(progress, elapsed / (60.0 * float(budget)))
        if progress >= 1.0 or (stop_after is not None and step >= stop_after):
            break
        for g, lr in zip(optimizer.param_groups, base_lrs):
            g["lr"] = lr * lr_factor(progress, warmup, min_ratio)
        out_dec, intent_logits = run_forward(ddp, batch_data, text, device)
        present = batch_data["present"].to(device)
        n_pos = None
        if world > 1:
            n_pos = (present > 0.5).float().sum()
            dist.all_reduce(n_pos)
            n_pos = n_pos / world
        losses = segmentation_loss(out_dec, batch_data["masks"].to(device), present, weights, n_pos)
        if heads:
            targets = torch.tensor(
                [
                    sampler.index.get(n, -100) if p else -100
                    for n, p in zip(batch_data["structures"], batch_data["prompts"])
                ]
            )
            losses["intent"] = intent_loss(intent_logits, targets)
            losses["total"] = losses["total"] + intent_weight * losses["intent"]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(losses["total"]).backward()
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
        scaler.step(optimizer)
        scaler.update()
        step += 1
        seen += batch
        if bar is not None:
            bar.update(1)
        if step % log_every == 0 or step == 1:
            logged = torch.stack([v.detach().float() for v in losses.values()])
            if world > 1:  # log the global batch's loss, not rank 0's share
                dist.all_reduce(logged)
                logged = logged / world
        if rank == 0 and (step % log_every == 0 or step == 1):
            now = time.time()
            row = {"step": step, "elapsed_s": round(now - t_start, 1), "lr": optimizer.param_groups[0]["lr"]}
            row.update({k: round(float(v), 5) for k, v in zip(losses, logged)})
            row["grad_norm"] = round(float(grad_norm), 4)
            row["samples_per_s"] = round(seen / max(now - t_log, 1e-6), 2)
            _append_csv(out / "log.csv", row)
            if bar is not None:
                bar.set_postfix(loss=row["total"], dice=row["dice"])
            seen, t_log = 0, now
        if rank == 0 and val_samples and step % val_every == 0:
            _validate(model, val_samples, text, device, out, step, t_start)
        if rank == 0 and step % ckpt_every == 0:
            save_checkpoint(ckpt, model, optimizer, scaler, step, time.time() - t_start, cfg, _states(heads))
    if rank == 0:
        save_checkpoint(ckpt, model, optimizer, scaler, step, time.time() - t_start, cfg, _states(heads))
        if val_samples and stop_after is None and step % val_every:
            _validate(model, val_samples, text, device, out, step, t_start)
        log.info("finished at step %d after %.1f min", step, (time.time() - t_start) / 60)
    if bar is not None:
        bar.close()
    if world > 1:
        dist.barrier()
    return out


def _states(heads: Dict) -> Dict:
    return {name: module.state_dict() for name, module in heads.items()}


def _validation_set(cfg: Dict, sampler):
    tc = cfg.get("train", {})
    names = tc.get("val_structures")
    per = int(tc.get("val_per_structure", 2))
    try:
        val = make_sampler(cfg, "val", augment=False)
    except ValueError:
        val = sampler
    return val.validation_samples(per, names)


def _validate(model, samples, text, device, out: Path, step: int, t_start: float) -> None:
    """Quick validation; the weights with the best mean Dice so far are kept in ``best.pt``."""
    res = quick_validation(model, samples, text, device)
    row = {"step": step, "elapsed_s": round(time.time() - t_start, 1), "mean_dice": round(res.pop("mean"), 4)}
    row.update({k: round(v, 4) for k, v in sorted(res.items())})
    best_file = out / "best.json"
    best = json.loads(best_file.read_text()) if best_file.exists() else {"mean_dice": -1.0}
    if row["mean_dice"] > best["mean_dice"]:
        tmp = out / "best.pt.tmp"
        torch.save({"model": model.state_dict(), "step": step, "mean_dice": row["mean_dice"]}, tmp)
        tmp.replace(out / "best.pt")
        best_file.write_text(json.dumps({"step": step, "mean_dice": row["mean_dice"]}))
    _append_csv(out / "val.csv", row)
    log.info(
        "step %d validation mean Dice %.3f (best %.3f)",
        step,
        row["mean_dice"],
        max(row["mean_dice"], best["mean_dice"]),
    )


def _progress(total: int, step: int, rank: int):
    if rank != 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=step, mininterval=30, desc="train")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train a TextSegment model (single process or torchrun).")
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", help="run folder (default training/runs/<config name>)")
    parser.add_argument("--steps", type=int, help="total optimiser steps (overrides train.steps)")
    parser.add_argument("--minutes", type=float, help="wall-clock budget; the schedule anneals over it")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (overrides train.threads)")
    parser.add_argument("--init", help="warm start: a bundle folder whose weights a new run starts from")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = load_config(args.config)
    if args.threads:
        cfg.setdefault("train", {})["threads"] = args.threads
    out = Path(args.out or Path("training/runs") / cfg["name"])
    train(cfg, out, args.device, args.steps, args.minutes, init=Path(args.init) if args.init else None)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
