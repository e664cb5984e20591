"""Helpers of the robustness tests: small real volumes, snapshots of folders, the CLI run in-process."""

import hashlib
import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import numpy as np
import SimpleITK as sitk

from TextSegmentLib.atomic import current_umask
from TextSegmentLib.cli.main import main

#: environment of the subprocesses: this repository first, one thread (the volumes are tiny)
SUBPROCESS_ENV = {
    **os.environ,
    "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread while the block runs: these volumes are tiny, and on a busy 2-core machine a second
    thread only adds waiting (calls several times slower); the previous setting comes back afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def small_volume(path: Path, seed: int = 0, shape=(8, 12, 10), spacing=(1.2, 1.0, 2.0)) -> Path:
    """An 8 x 12 x 10 (k, j, i) float32 volume with a bright blob, written by SimpleITK."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    blob = ((z - shape[0] / 2) / 3) ** 2 + ((y - shape[1] / 2) / 4) ** 2 + ((x - shape[2] / 2) / 3.5) ** 2 < 1
    array = (100.0 * blob + 10.0 * rng.random(shape)).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((3.0, -2.0, 5.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), path.name.endswith(".gz"))
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def snapshot(folder: Path) -> Dict[str, Tuple[str, int]]:
    """Relative path -> (sha256, mode) of every file under ``folder`` (links and FIFOs by their kind)."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        st = os.lstat(p)
        if stat.S_ISREG(st.st_mode):
            out[str(p.relative_to(folder))] = (digest(p), stat.S_IMODE(st.st_mode))
        elif not stat.S_ISDIR(st.st_mode):
            out[str(p.relative_to(folder))] = ("special", stat.S_IMODE(st.st_mode))
    return out


def temporary_files(folder: Path) -> List[str]:
    """Files a writer may leave behind: temporary files, lock files, write probes."""
    return [
        str(p)
        for p in Path(folder).rglob("*")
        if ".tmp" in p.name or p.name.endswith(".lock") or p.name.startswith(".textsegment-write-test")
    ]


def expected_file_mode() -> int:
    return 0o666 & ~current_umask()


def expected_dir_mode() -> int:
    return 0o777 & ~current_umask()


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def cli(capsys, *args) -> Tuple[int, str, str]:
    """Run ``python -m TextSegmentLib ARGS`` in this process: (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def seg(capsys, bundle, *args) -> Tuple[int, str, str]:
    """``segment ARGS`` with ``bundle`` on the CPU (unless ARGS name a device), without progress bars."""
    device = [] if "--device" in args else ["--device", "cpu"]
    return cli(capsys, "segment", *args, "--model", bundle, "--no-progress", *device)
