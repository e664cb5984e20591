"""Training samples from the slice cache: which (case, slice, structure) to show, with which prompt.

A sample is a positive (the structure covers >= ``min_pixels`` on the slice) or a negative (the structure is
annotated in the case but absent from the slice) at ``neg_ratio``; structures are drawn with ``structure_weights``
(so small deep grey nuclei are seen as often as needed), then one of their slices. Prompts: text alone mostly,
text + jittered box or sampled points sometimes (mixed prompts), box or points alone rarely, and anatomy-agnostic
spatial queries. Every random draw comes from ``numpy`` generators seeded by (seed, step, global index).
"""

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from .augment import SliceAugmenter, degrade, flip_lr, synthesize
from .prepare.run import load_manifest
from .prompting import PromptBank, box_contradicting_prior, spatial_target
from .vocabulary import Structure

DEFAULT_MODES = {"text": 0.75, "text_box": 0.12, "text_points": 0.08, "box": 0.03, "points": 0.02}
MAX_POINTS = 4


@dataclass
class Sample:
    image: np.ndarray  # (C, S, S) float32 [0, 255]
    mask: np.ndarray  # (S, S) uint8
    present: float
    prompt: Optional[str]
    box: np.ndarray  # (4,), all -1 when none
    points: np.ndarray  # (MAX_POINTS, 2)
    labels: np.ndarray  # (MAX_POINTS,), -1 padding
    structure: str
    prior: Optional[np.ndarray] = None  # (S, S) float32 logits of a previous mask (mask prompt), or None


class CaseArrays:
    """Memory-mapped arrays of one cached case in one plane (axial unless the cache also holds others)."""

    def __init__(self, root: Path, entry: Dict, plane: str = "axial") -> None:
        d = root / entry["id"]
        p = "" if plane == "axial" else f"{plane}_"
        self.entry, self.plane = entry, plane
        self.images = {w: np.load(d / f"{p}image_{w}.npy", mmap_mode="r") for w in entry["windows"]}
        self.layers = {n: np.load(d / f"{p}layer_{n}.npy", mmap_mode="r") for n in entry["layers"]}
        self.counts = np.load(d / f"{p}counts.npy")
        parts = d / f"{p}components.npy"
        self.components = np.load(parts) if parts.is_file() else np.ones(self.counts.shape, np.uint8)
        self.synth = np.load(d / f"{p}synth.npy", mmap_mode="r") if entry.get("synth") else None
        self.n = self.counts.shape[0]

    def mask(self, s: Structure, k: int) -> np.ndarray:
        out = np.zeros(next(iter(self.images.values())).shape[1:], dtype=bool)
        for layer, values in s.sources.items():
            if layer in self.layers:
                out |= np.isin(self.layers[layer][k], values)
        return out

    def image(self, window: Optional[str], k: int, context: bool) -> np.ndarray:
        img = self.images.get(window) if window in self.images else next(iter(self.images.values()))
        ks = [max(k - 1, 0), k, min(k + 1, self.n - 1)] if context else [k, k, k]
        return np.stack([img[i] for i in ks]).astype(np.float32)


class SliceSampler:
    """Draws augmented, prompted training samples (or fixed validation samples) from a slice cache."""

    def __init__(self, cache_dir, options: Dict, split: str = "train", slice_context: bool = False) -> None:
        self.root = Path(cache_dir)
        self.manifest = load_manifest(self.root)
        self.opt = options
        self.min_pixels = int(options.get("min_pixels", self.manifest["min_pixels"]))
        self.context = slice_context
        self.structures = [Structure.from_dict(s) for s in self.manifest["structures"]]
        self.index = {s.name: i for i, s in enumerate(self.structures)}
        planes = options.get("planes", ["axial"])  # planes to train on (the cache must hold them)
        self.cases = [
            CaseArrays(self.root, c, plane) for c in self.manifest["cases"] if c["split"] == split for plane in planes
        ]
        if not self.cases:
            raise ValueError(f"the cache {self.root} has no '{split}' cases")
        cw = options.get("case_weights", {})
        self.case_weight = np.array([float(cw.get(c.entry["id"], 1.0)) for c in self.cases])
        max_parts = int(options.get("max_components", 0))  # 0: keep every positive slice
        self.pos = {}  # structure index -> (case ids, slices, weights)
        self.neg = {}
        for j in range(len(self.structures)):
            p_c, p_k, p_w, n_c, n_k, n_w = [], [], [], [], [], []
            for ci, case in enumerate(self.cases):
                col = case.counts[:, j]
                ok = col >= self.min_pixels
                if max_parts:  # seed 000 drops slices where a structure is split into several pieces
                    ok &= case.components[:, j] <= max_parts
                ks = np.flatnonzero(ok)
                p_c += [ci] * len(ks)
                p_k += ks.tolist()
                p_w += [self.case_weight[ci] / max(len(ks), 1)] * len(ks)
                nk = np.flatnonzero((col == 0) & (case.counts.max(axis=1) > 0))
                n_c += [ci] * len(nk)
                n_k += nk.tolist()
                n_w += [self.case_weight[ci] / max(len(nk), 1)] * len(nk)
            if p_c:
                self.pos[j] = (np.array(p_c), np.array(p_k), _normalise(p_w))
            if n_c:
                self.neg[j] = (np.array(n_c), np.array(n_k), _normalise(n_w))
        sw = options.get("structure_weights", {})
        weights = []
        for j, s in enumerate(self.structures):
            w = max([float(v) for k, v in sw.items() if k in s.name] + [1.0]) if sw else 1.0
            weights.append(w if j in self.pos else 0.0)
        self.structure_p = _normalise(weights)
        self.bank = PromptBank()
        self.pool = self.bank.pool(
            [self.structures[j] for j in self.pos], int(options.get("prompts_per_structure", 24))
        )
        self.spatial_prompts = self.bank.spatial_pool()
        self.spatial = self._spatial_candidates(int(options.get("spatial_min_structures", 3)))
        self.augment = SliceAugmenter(options.get("augment")) if options.get("augment", {}) is not None else None
        modes = options.get("prompt_modes", DEFAULT_MODES)
        self.modes = list(modes)
        self.mode_p = _normalise([modes[m] for m in self.modes])

    def all_prompts(self) -> List[str]:
        """Every text the sampler can produce (for precomputing text features)."""
        out = [p for ps in self.pool.values() for p in ps]
        return out + [p for ps in self.spatial_prompts.values() for p in ps]

    def _leaves(self, case: CaseArrays) -> List[int]:
        """Single-label structures of the case's most finely labelled layer (they never overlap)."""
        by_layer: Dict[str, List[int]] = {}
        for j, s in enumerate(self.structures):
            if len(s.sources) == 1:
                layer, values = next(iter(s.sources.items()))
                if len(values) == 1 and layer in case.layers:
                    by_layer.setdefault(layer, []).append(j)
        return max(by_layer.values(), key=len) if by_layer else []

    def _spatial_candidates(self, minimum: int) -> List[Tuple[int, int, List[int]]]:
        out = []
        for ci, case in enumerate(self.cases):
            leaves = self._leaves(case)
            for k in range(case.n):
                present = [j for j in leaves if case.counts[k, j] >= self.min_pixels]
                if len(present) >= minimum:
                    out.append((ci, k, present))
        return out

    def sample(self, seed: int, augment: bool = True, with_prior: bool = False) -> Sample:
        """One sample, fully determined by ``seed``. ``with_prior`` adds a previous-mask prompt: the neighbouring
        slice's mask (propagation, as the engine does) or a degraded mask of this slice (refinement)."""
        rng = np.random.default_rng(seed)
        prng = random.Random(seed)
        flip = augment and rng.random() < float(self.opt.get("augment", {}).get("p_flip", 0.5) if self.augment else 0)
        if self.spatial and rng.random() < float(self.opt.get("p_spatial", 0.0)):
            return self._spatial_sample(rng, prng, flip, augment, seed, with_prior)
        j = int(rng.choice(len(self.structures), p=self.structure_p))
        s = self.structures[j]
        src = s
        if flip and s.laterality in ("left", "right"):
            if s.partner is None or self.index[s.partner] not in self.pos:
                flip = False
            else:
                src = self.structures[self.index[s.partner]]
        js = self.index[src.name]
        negative = js in self.neg and rng.random() < float(self.opt.get("neg_ratio", 0.3)) / (
            1 + float(self.opt.get("neg_ratio", 0.3))
        )
        cases, slices, p = self.neg[js] if negative else self.pos[js]
        i = int(rng.choice(len(cases), p=p))
        case, k = self.cases[cases[i]], int(slices[i])
        image = case.image(s.ct_window, k, self.context)
        mask = case.mask(src, k).astype(np.uint8)
        prior = None
        propagate = with_prior and rng.random() < 0.7
        if propagate:
            prior = case.mask(src, int(np.clip(k + rng.choice([-1, 1]), 0, case.n - 1))).astype(np.uint8)
        if augment and case.synth is not None and rng.random() < float(self.opt.get("augment", {}).get("p_synth", 0)):
            image = np.repeat(synthesize(np.asarray(case.synth[k]), rng)[None], image.shape[0], axis=0)
        if flip:
            image, mask = flip_lr(image), flip_lr(mask)
            prior = flip_lr(prior) if prior is not None else None
        if augment and self.augment is not None:
            image, mask, prior = self.augment(image, mask, seed, prior)
        if with_prior and not propagate:
            prior = degrade(mask, rng)
        present = float(mask.sum() >= max(1, self.min_pixels // 2))
        mode = "text" if not present else self.modes[int(rng.choice(len(self.modes), p=self.mode_p))]
        text = prng.choice(self.pool[s.name]) if augment else s.name
        out = prompted_sample(image, mask, present, text, mode, rng, s.name)
        contradict = float(self.opt.get("p_box_contradiction", 0.0))  # 0: no extra draw, samples as before
        if with_prior and contradict > 0 and out.box[0] >= 0 and rng.random() < contradict:
            prior = box_contradicting_prior(mask, out.box, rng)
        out.prior = _logits(prior, rng) if with_prior else None
        return out

    def _spatial_sample(self, rng, prng, flip, augment, seed, with_prior=False) -> Sample:
        ci, k, present = self.spatial[int(rng.integers(len(self.spatial)))]
        case = self.cases[ci]
        kind = prng.choice(sorted(self.spatial_prompts))
        image = case.image(None, k, self.context)
        masks = {self.structures[j].name: case.mask(self.structures[j], k) for j in present}
        if flip:
            image = flip_lr(image)
            masks = {n: flip_lr(m) for n, m in masks.items()}
        target = spatial_target(masks, kind)
        if target is None:
            return self.sample(seed + 1, augment, with_prior)
        mask = masks[target].astype(np.uint8)
        if augment and self.augment is not None:
            image, mask, _ = self.augment(image, mask, seed)
        text = prng.choice(self.spatial_prompts[kind])
        out = prompted_sample(image, mask, float(mask.sum() > 0), text, "text", rng, f"spatial:{kind}")
        out.prior = _logits(degrade(mask, rng), rng) if with_prior else None
        return out

    def validation_samples(self, per_structure: int = 2, names: Optional[List[str]] = None) -> List[Sample]:
        """Fixed, unaugmented samples: each structure's (or ``names``') largest slices, canonical name as prompt."""
        out = []
        for j in self.pos:
            s = self.structures[j]
            if names and s.name not in names:
                continue
            cases, slices, _ = self.pos[j]
            counts = np.array([self.cases[c].counts[k, j] for c, k in zip(cases, slices)])
            for i in np.argsort(-counts)[:per_structure]:
                case, k = self.cases[cases[i]], int(slices[i])
                img, m = case.image(s.ct_window, k, self.context), case.mask(s, k).astype(np.uint8)
                out.append(prompted_sample(img, m, 1.0, s.name, "text", None, s.name))
        return out


def jittered_box(mask: np.ndarray, rng: np.random.Generator, jitter: float = 0.1) -> np.ndarray:
    """Bounding box (x0, y0, x1, y1) of a mask, each side moved by up to ``jitter`` of the box size (+2 px)."""
    rows, cols = np.nonzero(mask)
    y0, y1, x0, x1 = rows.min(), rows.max(), cols.min(), cols.max()
    h, w = y1 - y0 + 1, x1 - x0 + 1
    d = rng.uniform(-1, 1, 4) * np.array([w, h, w, h]) * jitter + rng.uniform(-2, 2, 4)
    size = mask.shape[0] - 1
    box = np.clip(np.array([x0, y0, x1, y1], dtype=np.float32) + d, 0, size)
    return np.array([min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])], np.float32)


def sampled_points(mask: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """1-3 positive points inside the mask and 0-1 negative point outside it, padded to MAX_POINTS."""
    points = np.zeros((MAX_POINTS, 2), dtype=np.float32)
    labels = -np.ones(MAX_POINTS, dtype=np.float32)
    rows, cols = np.nonzero(mask)
    n_pos = int(rng.integers(1, 4))
    idx = rng.choice(len(rows), size=min(n_pos, len(rows)), replace=False)
    for i, t in enumerate(idx):
        points[i] = (cols[t], rows[t])
        labels[i] = 1
    if rng.random() < 0.5:
        orows, ocols = np.nonzero(mask == 0)
        t = int(rng.integers(len(orows)))
        points[len(idx)] = (ocols[t], orows[t])
        labels[len(idx)] = 0
    return points, labels


def prompted_sample(image, mask, present, text, mode: str, rng, name: str) -> Sample:
    """A sample with the prompts of ``mode`` ("text", "box", "points" or combinations): a jittered box and sampled
    +/- points from ``mask``; the text unless the mode is a box or points alone."""
    box = -np.ones(4, dtype=np.float32)
    points = np.zeros((MAX_POINTS, 2), dtype=np.float32)
    labels = -np.ones(MAX_POINTS, dtype=np.float32)
    if "box" in mode:
        box = jittered_box(mask, rng)
    if "points" in mode:
        points, labels = sampled_points(mask, rng)
    prompt = None if mode in ("box", "points") else text
    return Sample(image, mask, present, prompt, box, points, labels, name)


def _logits(prior: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A binary prior mask as logits of random confidence (+L inside, -L outside, L in [4, 20])."""
    level = float(rng.uniform(4.0, 20.0))
    return np.where(prior > 0, level, -level).astype(np.float32)


def _normalise(weights) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum()
    return w / total if total > 0 else np.full(len(w), 1.0 / max(len(w), 1))
