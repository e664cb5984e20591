"""Publishing a bundle: pack it into a reproducible ``.zip`` and write its catalog entry.

Used by ``training/`` after export and by ``python -m TextSegmentLib models publish``; docs/models.md walks through
the whole procedure.
"""

import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from ..atomic import atomic_file
from .archive import find_bundle_root, safe_unpack
from .catalog import archive_format, card_structures, id_from_card, load_catalog
from .errors import CatalogError
from .install import CARD_FILE, WEIGHTS_FILE, check_folder, sha256_of

PathLike = Union[str, Path]
#: a fixed timestamp makes the archive's bytes (and so its SHA-256) depend only on the files
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def pack_bundle(bundle_dir: PathLike, archive: PathLike) -> Path:
    """Check a bundle folder and write it as ``archive`` (``.zip``) holding one folder named after its id.

    Example:
        >>> pack_bundle("exports/ct-organs", "dist/ct-organs-v1.0.0.zip")  # doctest: +SKIP
        PosixPath('dist/ct-organs-v1.0.0.zip')
    """
    bundle_dir, archive = Path(bundle_dir), Path(archive)
    if archive_format(archive.name) != "zip":
        raise CatalogError(f"{archive.name}: pack into a .zip file")
    card = check_folder(bundle_dir)
    top = id_from_card(card)
    archive.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in bundle_dir.rglob("*") if p.is_file() and p.name != "install.json")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            info = zipfile.ZipInfo(f"{top}/{f.relative_to(bundle_dir).as_posix()}", _ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(f, "rb") as src, zf.open(info, "w") as out:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    out.write(chunk)
    return archive


def make_entry(
    source: PathLike,
    urls: Sequence[str] = (),
    embedded: Optional[str] = None,
    modalities: Optional[Sequence[str]] = None,
    **fields: Any,
) -> Dict[str, Any]:
    """The catalog entry of an archive (give ``urls``) or of an embedded bundle folder (give ``embedded``).

    Id, title, structures (listed for archives only: an embedded card is read directly), license, text encoder and
    timings come from the model card; ``fields`` override or add
    any entry field (``description``, ``sample_data``, ``deprecated``...).

    Example:
        >>> make_entry("dist/ct-organs-v1.0.0.zip", ["https://example.org/ct-organs-v1.0.0.zip"])  # doctest: +SKIP
        {'id': 'ct-organs-v1.0.0', ...}
    """
    source = Path(source)
    with tempfile.TemporaryDirectory() as tmp:
        if source.is_dir():
            if not embedded:
                raise CatalogError("a bundle folder can only be listed as embedded; pack it into a .zip for a URL")
            root = source
        else:
            if not urls:
                raise CatalogError("an archive entry needs at least one URL")
            root = find_bundle_root(safe_unpack(source, Path(tmp) / "x"))
        card = check_folder(root)
        weights_sha = sha256_of(root / WEIGHTS_FILE)
        weights_size = (root / WEIGHTS_FILE).stat().st_size
        card_sha = sha256_of(root / CARD_FILE)
    encoder = card.get("text_encoder", {})
    entry: Dict[str, Any] = {
        "id": id_from_card(card),
        "title": card.get("title") or card.get("name", ""),
        "description": card.get("description", ""),
        "modalities": list(modalities or card.get("modalities") or ["CT", "MR"]),
        "sha256": weights_sha if embedded else sha256_of(source),
        "size": weights_size if embedded else source.stat().st_size,
        "card_sha256": card_sha,
        "format_version": card["format_version"],
        "text_encoder": {
            "name": encoder.get("name", ""),
            "package": encoder.get("package"),
            "bundled": bool(encoder.get("path")),
            "dim": encoder.get("dim"),
        },
        "license": card.get("license", ""),
        "timings": {"cpu_seconds": None, "gpu_seconds": None, **(card.get("timings") or {})},
        "deprecated": False,
    }
    if entry["text_encoder"]["dim"] is None:
        del entry["text_encoder"]["dim"]
    if embedded:
        entry["embedded"] = embedded  # its structures are read from the card beside it
    else:
        entry["structures"] = card_structures(card)  # shown before the archive is downloaded
        entry["urls"] = list(urls)
        entry["weights_sha256"] = weights_sha
    if card.get("min_textsegment_version"):
        entry["min_textsegment_version"] = card["min_textsegment_version"]
    entry.update(fields)
    return entry


def add_to_catalog(
    catalog_file: PathLike, entry: Dict[str, Any], default: Optional[str] = None, only_embedded: bool = False
) -> List[Path]:
    """Add (or replace, by id) ``entry`` in a catalog file; ``default`` also sets the catalog's default.

    ``only_embedded``: ``entry`` becomes the one embedded model: every other entry loses ``embedded`` (one with URLs
    stays, as a download; one without leaves the catalog). Returns the bundle folders no entry embeds any more (for
    the caller to delete once the new catalog is in place).
    """
    path = Path(catalog_file)
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"catalog_version": 1, "models": []}
    models = [m for m in data.get("models", []) if m.get("id") != entry["id"]]
    retired: List[Path] = []
    if only_embedded:
        kept = []
        for m in models:
            folder = m.get("embedded")
            if folder and folder != entry.get("embedded"):
                retired.append(path.parent / folder)
                m = {k: v for k, v in m.items() if k != "embedded"}
                if not m.get("urls"):
                    continue
            kept.append(m)
        models = kept
    data["models"] = models + [entry]
    if default is not None:
        data["default"] = default
    with atomic_file(path, ".json") as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        load_catalog(Path(tmp))  # the new catalog must load before it replaces the old one
    return retired
