"""A picture of a prepared case, to check orientation and labels by eye: for a few axial slices, the image with the
outlines of its largest structures, patient's left and right marked."""

from pathlib import Path
from typing import Dict, List

import numpy as np

from ..vocabulary import Structure


def write_preview(case_dir: Path, entry: Dict, structures: List[Structure], n_slices: int = 4) -> Path:
    """Write ``case_dir/preview.png`` and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = np.load(case_dir / f"image_{entry['windows'][0]}.npy", mmap_mode="r")
    counts = np.load(case_dir / "counts.npy")
    layers = {n: np.load(case_dir / f"layer_{n}.npy", mmap_mode="r") for n in entry["layers"]}
    rows = np.flatnonzero(counts.max(axis=1) > 0)
    ks = rows[np.linspace(0, len(rows) - 1, n_slices + 2).astype(int)[1:-1]] if len(rows) else [image.shape[0] // 2]
    fig, axes = plt.subplots(1, len(ks), figsize=(3.2 * len(ks), 3.6))
    for ax, k in zip(np.atleast_1d(axes), ks):
        ax.imshow(image[k], cmap="gray", vmin=0, vmax=255)
        order = np.argsort(-counts[k])
        shown = []
        for j in order[:6]:
            s = structures[j]
            if counts[k, j] <= 0:
                break
            mask = np.zeros(image.shape[1:], bool)
            for layer, values in s.sources.items():
                if layer in layers:
                    mask |= np.isin(layers[layer][k], values)
            ax.contour(mask, levels=[0.5], linewidths=0.8, colors=[plt.cm.tab10(len(shown) % 10)])
            shown.append(s.name)
        ax.set_title(f"slice {k}: " + ", ".join(shown[:2]), fontsize=7)
        ax.text(2, image.shape[1] - 4, "R", color="yellow", fontsize=9)
        ax.text(image.shape[2] - 10, image.shape[1] - 4, "L", color="yellow", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{entry['id']} ({entry['modality']}): axial, anterior at the top, patient's left on the right")
    fig.tight_layout()
    out = case_dir / "preview.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
