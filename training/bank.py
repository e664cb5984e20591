"""Training samples from a bank of 3D variants (training/prepare/variants.py): any plane, any contrast.

A sample draws a structure (``structure_weights``), a plane (``plane_weights``), then a variant and a slice where
the structure is present (or, at ``neg_ratio``, absent while other anatomy is there). The variants are the complete
folders of the bank, rescanned every ``bank_refresh_s`` seconds while the bank still grows (so samples then depend on
when a variant appeared, not only on the seed). The slice is cut from the
variant with the engine's own ``slice_view`` and fitted to the model size with the engine's ``plan_fit`` /
``fit_slices``; the image is the variant's real image (MR already normalised; CT windowed for the prompt) or, at
``p_synth``, a slice synthesised from the full-head class map (training/synth.py). Axial and coronal slices are
mirrored left-right at ``p_flip`` with the side of the target and prompt swapped; sagittal slices show no side, so
there a sided prompt ("left putamen") targets the structure of either side on that slice (FastSurfer's merged
sagittal labels; the engine takes the side from the other views).
"""

import json
import random
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from TextSegmentLib.engine.volume import slice_pixel_spacing, slice_view
from TextSegmentLib.imaging import CT_WINDOWS, fit_slices, normalize_ct, plan_fit

from .augment import SliceAugmenter, degrade
from .data import Sample, _logits, _normalise, prompted_sample
from .prompting import PromptBank
from .synth import draw_contrast, synthesize_slice
from .vocabulary import Structure

DEFAULT_PLANES = {"axial": 0.4, "coronal": 0.3, "sagittal": 0.3}
DEFAULT_MODES = {"text": 0.75, "text_box": 0.12, "text_points": 0.08, "box": 0.03, "points": 0.02}


class Variant:
    """One variant of the bank, memory-mapped."""

    def __init__(self, folder: Path) -> None:
        with open(folder / "variant.json", encoding="utf-8") as fh:
            self.info = json.load(fh)
        self.id = self.info["id"]
        self.modality = self.info["modality"]
        self.spacing = float(self.info["spacing"])
        self.image = np.load(folder / "image.npy", mmap_mode="r")
        self.layers = {p.stem[len("layer_") :]: np.load(p, mmap_mode="r") for p in sorted(folder.glob("layer_*.npy"))}
        gen = folder / "gen.npy"
        self.gen = np.load(gen, mmap_mode="r") if gen.is_file() else None
        if self.gen is not None:
            self.layers["gen"] = self.gen
        self.counts = {p: np.load(folder / f"counts_{p}.npy") for p in DEFAULT_PLANES}

    def view(self, array: np.ndarray, plane: str, ks) -> np.ndarray:
        """Slices ``ks`` (clamped) of ``array`` along ``plane`` as an (len(ks), rows, cols) array."""
        v = slice_view(array, plane)
        ks = np.clip(np.asarray(ks), 0, v.shape[0] - 1)
        return np.stack([np.asarray(v[int(k)]) for k in ks])

    def mask(self, s: Structure, plane: str, k: int) -> np.ndarray:
        out = None
        for layer, values in s.sources.items():
            if layer in self.layers:
                m = np.isin(self.view(self.layers[layer], plane, [k])[0], values)
                out = m if out is None else out | m
        return out


class BankSampler:
    """Draws augmented, prompted samples (or fixed validation samples) from a variant bank.

    ``options``: the config's ``train.data`` (weights, prompt modes, ``p_synth``, ``plane_weights``, ``augment``).
    ``variant_weights``: how often a variant is drawn, by the flags its ``variant.json`` records (``{"edges": 0.25}``
    draws a variant with a cut field of view or a slab a quarter as often as a whole one; flags multiply).
    """

    def __init__(
        self,
        bank_dir,
        options: Dict,
        split: str = "train",
        slice_context: bool = False,
        variant_weights: Optional[Dict[str, float]] = None,
    ) -> None:
        self.root = Path(bank_dir)
        with open(self.root / "bank.json", encoding="utf-8") as fh:
            self.manifest = json.load(fh)
        self.opt = options
        self.size = int(self.manifest["image_size"])
        self.min_pixels = int(options.get("min_pixels", self.manifest["min_pixels"]))
        self.context = slice_context
        self.structures = [Structure.from_dict(s) for s in self.manifest["structures"]]
        self.index = {s.name: i for i, s in enumerate(self.structures)}
        self.split = split
        self.variant_weights = {str(k): float(w) for k, w in (variant_weights or {}).items()}
        if any(w < 0 for w in self.variant_weights.values()):
            raise ValueError(f"variant_weights must not be negative: {self.variant_weights}")
        self.variants: List[Variant] = []
        self._refresh_every = float(options.get("bank_refresh_s", 600))
        self._scan()
        if not self.variants:
            raise ValueError(f"the bank {self.root} has no '{split}' variants")
        planes = options.get("plane_weights", DEFAULT_PLANES)
        self.planes = list(planes)
        self.plane_p = _normalise([planes[p] for p in self.planes])
        sw = options.get("structure_weights", {})
        lw = options.get("layer_weights", {})
        weights = []
        for s in self.structures:
            matches = [float(v) for k, v in sw.items() if k != "*" and k in s.name]
            w = max(matches) if matches else float(sw.get("*", 1.0))  # "*": the weight of every other structure
            weights.append(w * min(float(lw.get(layer, 1.0)) for layer in s.sources))
        self.base_weights = np.asarray(weights)
        self._index_variants()
        self.bank = PromptBank()
        # every structure the bank can label gets prompts (a growing bank may add some later)
        self.pool = self.bank.pool(
            self.structures,
            int(options.get("prompts_per_structure", 24)),
            p_long=float(options.get("p_long_prompt", 0.0)),
        )
        aug = options.get("augment", {})
        self.augment = (
            SliceAugmenter({**aug, "p_affine": 0.0, "p_elastic": 0.0})
            if options.get("augment", {}) is not None
            else None
        )
        modes = options.get("prompt_modes", DEFAULT_MODES)
        self.modes = list(modes)
        self.mode_p = _normalise([modes[m] for m in self.modes])

    def _scan(self) -> None:
        """Load the variants of this split that are complete on disk and not loaded yet (the bank may grow)."""
        known = {v.id for v in self.variants}
        prefix = "val" if self.split == "val" else "v"
        for folder in sorted(self.root.iterdir()):
            if folder.name in known or folder.suffix == ".tmp" or not (folder / "variant.json").is_file():
                continue
            if folder.name.startswith("val") != (prefix == "val"):
                continue
            self.variants.append(Variant(folder))
        self._scanned = time.time()

    def _index_variants(self) -> None:
        # variants that label each structure (a CT knows no AAL, an MR no CT skull; no head on a skull-stripped MR)
        self.has = {
            j: [
                i
                for i, v in enumerate(self.variants)
                if v.counts["axial"][0, j] >= 0 and not (s.region == "head" and v.info.get("stripped"))
            ]
            for j, s in enumerate(self.structures)
        }
        # with variant weights, a structure draws its variant by them (and none whose variants all weigh 0)
        self.variant_p: Dict[int, Optional[np.ndarray]] = {j: None for j in self.has}
        if self.variant_weights:
            vw = np.asarray([self._variant_weight(v) for v in self.variants])
            for j, idx in self.has.items():
                w = vw[idx]
                if w.sum() > 0:
                    self.variant_p[j] = w / w.sum()
                else:
                    self.has[j] = []
        self.structure_p = _normalise([w if self.has[j] else 0.0 for j, w in enumerate(self.base_weights)])

    def _variant_weight(self, v: Variant) -> float:
        w = 1.0
        for flag, factor in self.variant_weights.items():
            if v.info.get(flag):
                w *= factor
        return w

    def all_prompts(self) -> List[str]:
        """Every text the sampler can produce (for precomputing text features)."""
        return [p for ps in self.pool.values() for p in ps]

    # --- one sample ---------------------------------------------------------------------------------------------
    def _slices(self, v: Variant, plane: str, js: List[int], negative: bool) -> np.ndarray:
        counts = v.counts[plane]
        col = counts[:, js].clip(min=0).sum(axis=1)
        if negative:
            return np.flatnonzero((col == 0) & (counts.max(axis=1) > self.min_pixels))
        return np.flatnonzero(col >= self.min_pixels)

    def _image(self, v: Variant, s: Structure, plane: str, k: int, rng, synth: bool) -> np.ndarray:
        """(H, W) float32 image in [0, 255] of slice k (real or synthetic), at the variant's resolution."""
        if synth:
            params = draw_contrast(rng, float(self.opt.get("p_family", 0.5)))
            r = int(rng.integers(0, 3)) if rng.random() < float(self.opt.get("p_thick_synth", 0.2)) else 0
            inplane = None
            if r == 0 and rng.random() < float(self.opt.get("p_thick_synth", 0.2)):
                inplane = (int(rng.integers(2)), float(rng.uniform(1.5, 3.5)))
            slab = v.view(v.gen, plane, range(k - r, k + r + 1))
            return synthesize_slice(slab, params, v.info["gen_counts"], rng, inplane)
        raw = v.view(v.image, plane, [k])[0]
        if v.modality == "CT":
            return normalize_ct(raw, CT_WINDOWS.get(s.ct_window or "soft_tissue", CT_WINDOWS["soft_tissue"]))
        return raw.astype(np.float32)

    def _fit(self, v: Variant, plane: str, array: np.ndarray):
        h, w = array.shape[-2:]
        rs, cs = slice_pixel_spacing((v.spacing,) * 3, plane)
        return plan_fit(h, w, rs, cs, self.size)

    def sample(self, seed: int, augment: bool = True, with_prior: bool = False) -> Sample:
        """One sample, fully determined by ``seed``."""
        if self.split == "train" and time.time() - self._scanned > self._refresh_every:
            n = len(self.variants)
            self._scan()
            if len(self.variants) != n:
                self._index_variants()
        rng = np.random.default_rng(seed)
        prng = random.Random(seed)
        for _ in range(50):
            out = self._try(rng, prng, augment, with_prior)
            if out is not None:
                return out
        raise RuntimeError("could not draw a sample from the bank (does it hold any labelled slice?)")

    def _try(self, rng, prng, augment: bool, with_prior: bool) -> Optional[Sample]:
        j = int(rng.choice(len(self.structures), p=self.structure_p))
        s = self.structures[j]
        plane = self.planes[int(rng.choice(len(self.planes), p=self.plane_p))]
        flip = augment and plane != "sagittal" and rng.random() < float(self.opt.get("p_flip", 0.5))
        src = s
        if flip and s.laterality in ("left", "right"):
            if s.partner is None or s.partner not in self.index:
                flip = False
            else:
                src = self.structures[self.index[s.partner]]
        targets = [src]
        if plane == "sagittal" and src.partner in self.index:  # no side on a sagittal slice: either side counts
            targets.append(self.structures[self.index[src.partner]])
        js = [self.index[t.name] for t in targets]
        neg_ratio = float(self.opt.get("neg_ratio", 0.3))
        negative = rng.random() < neg_ratio / (1 + neg_ratio)
        v = self.variants[int(rng.choice(self.has[j], p=self.variant_p[j]))] if self.has[j] else None
        if v is None:
            return None
        ks = self._slices(v, plane, js, negative)
        if not len(ks):
            return None
        k = int(rng.choice(ks))
        synth = augment and v.gen is not None and rng.random() < float(self.opt.get("p_synth", 0.0))
        image = self._image(v, s, plane, k, rng, synth)
        mask = self._target(v, targets, plane, k)
        fit = self._fit(v, plane, image)
        prior = None
        propagate = with_prior and rng.random() < 0.7
        if propagate:
            prior = self._target(v, targets, plane, k + int(rng.choice([-1, 1])))
        img = fit_slices(image[None], fit)[0].numpy()
        mask = (fit_slices(mask[None].astype(np.float32), fit)[0].numpy() >= 0.5).astype(np.uint8)
        if prior is not None:
            prior = (fit_slices(prior[None].astype(np.float32), fit)[0].numpy() >= 0.5).astype(np.uint8)
        image3 = np.repeat(img[None], 3, axis=0)
        if flip:
            image3, mask = image3[..., ::-1].copy(), mask[..., ::-1].copy()
            prior = prior[..., ::-1].copy() if prior is not None else None
        if augment and self.augment is not None and not synth:
            image3, mask, prior = self.augment(image3, mask, int(rng.integers(2**31)), prior)
        if with_prior and not propagate:
            prior = degrade(mask, rng)
        present = float(mask.sum() >= max(1, self.min_pixels // 2))
        mode = "text" if not present else self.modes[int(rng.choice(len(self.modes), p=self.mode_p))]
        text = prng.choice(self.pool[s.name]) if augment else s.name
        out = prompted_sample(image3.astype(np.float32), mask, present, text, mode, rng, s.name)
        out.prior = _logits(prior, rng) if with_prior else None
        return out

    def _target(self, v: Variant, targets: List[Structure], plane: str, k: int) -> np.ndarray:
        n = slice_view(v.image, plane).shape[0]
        k = int(np.clip(k, 0, n - 1))
        out = None
        for t in targets:
            m = v.mask(t, plane, k)
            if m is not None:
                out = m if out is None else out | m
        return out if out is not None else np.zeros(slice_view(v.image, plane).shape[1:], dtype=bool)

    def validation_samples(self, per_structure: int = 2, names: Optional[List[str]] = None) -> List[Sample]:
        """Fixed samples from the validation variants: for each structure and plane, its largest slices, once with
        the real image and once synthesised as a T2-like contrast; canonical name as prompt."""
        out = []
        for j, s in enumerate(self.structures):
            if not self.has[j] or (names and s.name not in names):
                continue
            for plane in self.planes:
                targets = [s]
                if plane == "sagittal" and s.partner in self.index:
                    targets.append(self.structures[self.index[s.partner]])
                js = [self.index[t.name] for t in targets]
                best = sorted(
                    (
                        (int(v.counts[plane][:, js].clip(min=0).sum(axis=1)[k]), vi, k)
                        for vi in self.has[j]
                        for v in [self.variants[vi]]
                        for k in range(v.counts[plane].shape[0])
                    ),
                    reverse=True,
                )[:per_structure]
                for n, (_, vi, k) in enumerate(best):
                    v = self.variants[vi]
                    rng = np.random.default_rng([j, vi, k])
                    synth = n % 2 == 1 and v.gen is not None
                    if synth:
                        slab = v.view(v.gen, plane, [k])
                        params = draw_contrast(rng, family="t2")
                        image = synthesize_slice(slab, params, v.info["gen_counts"], rng)
                    else:
                        image = self._image(v, s, plane, k, rng, False)
                    fit = self._fit(v, plane, image)
                    img = np.repeat(fit_slices(image[None], fit)[0].numpy()[None], 3, axis=0)
                    mask = (
                        fit_slices(self._target(v, targets, plane, k)[None].astype(np.float32), fit)[0].numpy() >= 0.5
                    ).astype(np.uint8)
                    label = f"{s.name}|{plane}|{'t2' if synth else 'real'}"
                    out.append(prompted_sample(img.astype(np.float32), mask, 1.0, s.name, "text", None, label))
        return out
