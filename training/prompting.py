"""Prompt generation from the data files in ``training/prompts/``: templated phrasings of names, synonyms and
abbreviations, laterality phrasings, free-form descriptions, anatomy-agnostic spatial queries, held-out phrasings.

Training draws from a fixed pool of prompts per structure (so text features are computed once); held-out
phrasings are kept out of that pool and used only by evaluation.
"""

import random
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import yaml

from .vocabulary import PROMPTS_DIR, Structure

SPATIAL_KINDS = ("largest", "smallest", "leftmost", "rightmost", "topmost", "lowest")


def load_yaml(name: str) -> Dict:
    with open(Path(PROMPTS_DIR) / name, encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


class PromptBank:
    """All phrasings, loaded once from ``templates.yaml`` and ``descriptions.yaml``."""

    def __init__(self, templates: Optional[Dict] = None, descriptions: Optional[Dict] = None) -> None:
        t = templates if templates is not None else load_yaml("templates.yaml")
        self.train: List[str] = list(t["train"])
        self.heldout: List[str] = list(t["heldout"])
        self.spatial: Dict[str, List[str]] = {k: list(v) for k, v in t["spatial"].items()}
        self.laterality: List[str] = list(t["laterality"])
        self.context: List[str] = list(t.get("context", []))
        self.long_requests: List[str] = list(t.get("long_requests", []))
        self.descriptions: Dict[str, List[str]] = (
            descriptions if descriptions is not None else load_yaml("descriptions.yaml")
        )
        overlap = set(self.train) & set(self.heldout)
        if overlap:
            raise ValueError(f"held-out templates also used for training: {sorted(overlap)}")

    def terms(self, s: Structure, rng: random.Random) -> str:
        """A way to name the structure: the canonical name half of the time, else a synonym or a sided phrasing."""
        r = rng.random()
        if r < 0.5 or (not s.synonyms and s.laterality not in ("left", "right")):
            return s.name
        if s.laterality in ("left", "right") and r < 0.7:
            tpl = rng.choice(self.laterality)
            short = {"left": "lt", "right": "rt"}[s.laterality]
            return tpl.format(side=s.laterality, s=s.laterality[0].upper(), short=short, name=s.base)
        return rng.choice(s.synonyms) if s.synonyms else s.name

    def description(self, s: Structure, rng: random.Random) -> Optional[str]:
        """A free-form description of the structure, with its side, or None when the files have none."""
        options = self.descriptions.get(s.base) or self.descriptions.get(s.name)
        if not options:
            return None
        text = rng.choice(options)
        if s.laterality in ("left", "right"):
            return rng.choice(
                [f"{s.laterality} {text}", f"{text}, {s.laterality} side", f"{text} on the {s.laterality}"]
            )
        return text

    def long_prompt(self, s: Structure, rng: random.Random, words: Optional[int] = None) -> str:
        """A long clinical request (about ``words`` words, 30-60 by default): context sentences with the request,
        which names the structure, at a random place among them."""
        target = words or rng.randint(30, 60)
        request = rng.choice(self.long_requests).format(name=self.terms(s, rng))
        parts = [request]
        pool = list(self.context)
        rng.shuffle(pool)
        while pool and sum(len(p.split()) for p in parts) < target:
            parts.insert(rng.randint(0, len(parts)), pool.pop())
        return "; ".join(parts) if rng.random() < 0.5 else ". ".join(p[0].upper() + p[1:] for p in parts) + "."

    def sample(self, s: Structure, rng: random.Random, p_description: float = 0.1, p_long: float = 0.0) -> str:
        """One training phrasing of a structure (a long clinical request at ``p_long``; casing varied)."""
        if self.context and rng.random() < p_long:
            return self.long_prompt(s, rng)
        if rng.random() < p_description:
            text = self.description(s, rng)
            if text:
                return text
        text = rng.choice(self.train).format(name=self.terms(s, rng))
        r = rng.random()
        if r < 0.05:
            return text.upper()
        if r < 0.12:
            return text[:1].upper() + text[1:] + rng.choice([".", "?", "!", ""])
        return text

    def pool(
        self, structures: Sequence[Structure], per_structure: int, seed: int = 0, p_long: float = 0.0
    ) -> Dict[str, List[str]]:
        """A fixed pool of distinct training prompts per structure (canonical name first), never a held-out one;
        about ``p_long`` of them long clinical requests."""
        heldout = set(self.heldout_prompts(structures))
        out: Dict[str, List[str]] = {}
        for s in structures:
            rng = random.Random(f"{seed}:{s.name}")
            prompts = [s.name]
            for _ in range(per_structure * 20):
                if len(prompts) >= per_structure:
                    break
                p = self.sample(s, rng, p_long=p_long)
                if p not in prompts and p not in heldout:
                    prompts.append(p)
            out[s.name] = prompts
        return out

    def spatial_pool(self) -> Dict[str, List[str]]:
        """The anatomy-agnostic query phrasings per kind."""
        return {k: list(self.spatial[k]) for k in SPATIAL_KINDS}

    def heldout_prompts(self, structures: Sequence[Structure]) -> List[str]:
        """Every held-out phrasing of every structure (canonical name), for evaluation only."""
        return [tpl.format(name=s.name) for s in structures for tpl in self.heldout]


def swap_side(name: str) -> str:
    """The contralateral name: ``left hippocampus`` <-> ``right hippocampus`` (unchanged when not sided)."""
    for a, b in (("left", "right"), ("right", "left")):
        if name.startswith(a + " "):
            return b + name[len(a) :]
    return name


def spatial_target(masks: Dict[str, np.ndarray], kind: str) -> Optional[str]:
    """Name of the structure picked by an anatomy-agnostic query on one slice (canonical LPS axial slice:
    columns run from the patient's right to left, rows from anterior (top) to posterior (bottom)).

    ``largest``/``smallest`` compare pixel counts; the directional kinds compare mask centroids. None when no
    mask is non-empty or the winner is tied.
    """
    stats = []
    for name, m in masks.items():
        n = int(m.sum())
        if n:
            rows, cols = np.nonzero(m)
            stats.append((name, n, float(rows.mean()), float(cols.mean())))
    if not stats:
        return None
    key = {
        "largest": lambda s: s[1],
        "smallest": lambda s: -s[1],
        "leftmost": lambda s: s[3],
        "rightmost": lambda s: -s[3],
        "topmost": lambda s: -s[2],
        "lowest": lambda s: s[2],
    }[kind]
    ranked = sorted(stats, key=key, reverse=True)
    if len(ranked) > 1 and key(ranked[0]) == key(ranked[1]):
        return None
    return ranked[0][0]


def box_contradicting_prior(mask: np.ndarray, box: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A previous-mask prompt that a box contradicts (for refinement training): the target ``mask`` grown by 3-8 px
    beyond the box (x0, y0, x1, y1), with a false blob outside the box where there is room. Trained with the box and
    the true mask as the target, the model learns that a box outranks a prior that spills out of it (a user's box
    says "here and only here").

    Example:
        >>> m = np.zeros((32, 32), np.uint8); m[10:20, 10:20] = 1
        >>> p = box_contradicting_prior(m, np.array([10, 10, 19, 19], np.float32), np.random.default_rng(0))
        >>> bool(p[10:20, 10:20].all()) and int(p.sum()) > int(m.sum())
        True
    """
    from scipy import ndimage

    out = ndimage.binary_dilation(mask > 0, iterations=int(rng.integers(3, 9)))
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    outside = np.ones(mask.shape, dtype=bool)
    outside[max(0, y0) : y1 + 1, max(0, x0) : x1 + 1] = False
    rows, cols = np.nonzero(outside & (mask == 0))
    if len(rows):
        t = int(rng.integers(len(rows)))
        radius = float(rng.uniform(2, 1 + max(2.0, 0.25 * max(x1 - x0, y1 - y0))))
        yy, xx = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
        out |= ((yy - rows[t]) ** 2 + (xx - cols[t]) ** 2 <= radius * radius) & outside
    return out.astype(np.uint8)
