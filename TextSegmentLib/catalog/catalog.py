"""The model catalog (``TextSegmentLib/resources/models.json``): load, check and select entries.

An entry id is ``<name>-v<major>.<minor>.<patch>``. The newest non-deprecated version of a name is what a bare
name resolves to; the catalog's ``default`` (a name or an id) names the model used when none is asked for.
The JSON schema ``resources/models.schema.json`` documents every field; :func:`load_catalog` checks the fields the
code relies on without needing the ``jsonschema`` package.
"""

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from ..resources import CATALOG_FILE
from .errors import CatalogError

#: environment variable naming another catalog file (used by tests and by sites with their own catalog)
CATALOG_ENV = "TEXTSEGMENT_CATALOG"
CATALOG_VERSION = 1
NAME_PATTERN = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"
ID_RE = re.compile(r"^(?P<name>" + NAME_PATTERN + r")-v(?P<version>\d+\.\d+\.\d+)$")
NAME_RE = re.compile(r"^" + NAME_PATTERN + r"$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
ARCHIVE_FORMATS = ("zip", "tar.gz")
REQUIRED_FIELDS = ("id", "title", "description", "modalities", "sha256", "size", "format_version")
REQUIRED_FIELDS += ("text_encoder", "license", "timings")

PathLike = Union[str, Path]


def parse_id(model_id: str) -> Optional[Tuple[str, Tuple[int, int, int]]]:
    """``(name, (major, minor, patch))`` of a catalog id, or None when it is not one.

    Example:
        >>> parse_id("ct-organs-v1.2.3")
        ('ct-organs', (1, 2, 3))
        >>> parse_id("ct-organs") is None
        True
    """
    m = ID_RE.match(model_id or "")
    if not m:
        return None
    major, minor, patch = (int(x) for x in m.group("version").split("."))
    return m.group("name"), (major, minor, patch)


def id_from_card(card: Dict[str, Any]) -> str:
    """``<name>-v<version>`` from a model card, the name made id-safe and a missing version taken as 0.0.0.

    Example:
        >>> id_from_card({"name": "CT Organs", "version": "1.2.0"})
        'ct-organs-v1.2.0'
    """
    name = re.sub(r"[^a-z0-9._-]+", "-", str(card.get("name") or "custom").lower()).strip("-._") or "custom"
    version = str(card.get("version") or "0.0.0")
    if not re.match(r"^\d+\.\d+\.\d+$", version):
        version = "0.0.0"
    return f"{name}-v{version}"


def card_structures(card: Dict[str, Any]) -> List[str]:
    """The structure names of a model card's ``vocabulary`` (entries are names or ``{"name": ...}`` objects).

    Example:
        >>> card_structures({"vocabulary": ["brain", {"name": "left putamen", "laterality": "left"}]})
        ['brain', 'left putamen']
    """
    names = []
    for item in card.get("vocabulary") or []:
        name = item.get("name") if isinstance(item, dict) else item
        if isinstance(name, str) and name:
            names.append(name)
    return names


def _embedded_structures(folder: Path) -> List[str]:
    """The structures of an embedded bundle, read from its card (the catalog does not repeat them); [] if unreadable."""
    try:
        with open(folder / "model.json", encoding="utf-8") as fh:
            card = json.load(fh)
    except (OSError, ValueError):
        return []
    return card_structures(card) if isinstance(card, dict) else []


def archive_format(url_or_name: str) -> Optional[str]:
    """``"zip"``, ``"tar.gz"`` or None from a file name or URL (query strings ignored)."""
    name = url_or_name.split("?", 1)[0].split("#", 1)[0].lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar.gz", ".tgz")):
        return "tar.gz"
    return None


@dataclass
class CatalogEntry:
    """One published model. ``sha256``/``size`` are those of the archive file for downloadable entries and of
    ``model.safetensors`` for embedded ones (see docs/models.md)."""

    id: str
    name: str
    version: Tuple[int, int, int]
    title: str
    description: str
    modalities: List[str]
    structures: List[str]
    sha256: str
    size: int
    format_version: int
    text_encoder: Dict[str, Any]
    license: str
    timings: Dict[str, Any]
    urls: List[str] = field(default_factory=list)
    archive: Optional[str] = None
    weights_sha256: Optional[str] = None
    card_sha256: Optional[str] = None
    min_textsegment_version: Optional[str] = None
    embedded: Optional[str] = None
    embedded_path: Optional[Path] = None
    sample_data: List[Dict[str, Any]] = field(default_factory=list)
    deprecated: bool = False
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


class Catalog:
    """The entries of one catalog file.

    Example:
        >>> cat = Catalog([], default=None)
        >>> cat.default_id() is None
        True
    """

    def __init__(self, entries: List[CatalogEntry], default: Optional[str] = None, path: Optional[Path] = None):
        self.entries = list(entries)
        self.default = default
        self.path = path
        self._by_id = {e.id: e for e in self.entries}

    def __iter__(self):
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, model_id: str) -> Optional[CatalogEntry]:
        """The entry with this exact id, or None."""
        return self._by_id.get(model_id)

    def names(self) -> List[str]:
        """Model names in catalog order, each once."""
        seen: List[str] = []
        for e in self.entries:
            if e.name not in seen:
                seen.append(e.name)
        return seen

    def newest(self, name: str) -> Optional[CatalogEntry]:
        """The newest non-deprecated version of ``name`` (None if there is none)."""
        candidates = [e for e in self.entries if e.name == name and not e.deprecated]
        return max(candidates, key=lambda e: e.version) if candidates else None

    def default_id(self) -> Optional[str]:
        """Id of the default model: the catalog's ``default`` (an id, or a name -> its newest version); without one,
        the newest version of the first name listed. None for an empty catalog."""
        if self.default:
            if self.default in self._by_id:
                return self.default
            entry = self.newest(self.default)
            return entry.id if entry else None
        for name in self.names():
            entry = self.newest(name)
            if entry:
                return entry.id
        return None

    def find_by_sha256(self, digest: str) -> Optional[CatalogEntry]:
        """The entry whose archive or weights SHA-256 is ``digest``."""
        for e in self.entries:
            if digest in (e.sha256, e.weights_sha256):
                return e
        return None


def default_catalog_path() -> Path:
    """``$TEXTSEGMENT_CATALOG`` when set, else the catalog shipped inside the package (``resources/models.json``)."""
    env = os.environ.get(CATALOG_ENV)
    if env:
        return Path(env).expanduser()
    return CATALOG_FILE


def _fail(path: Path, where: str, message: str) -> CatalogError:
    return CatalogError(f"catalog {path}: {where}: {message}")


#: the JSON type of each entry field the code uses (a hand-edited catalog with another type is refused with a message)
_FIELD_TYPES: Dict[str, Tuple[Any, str]] = {
    **dict.fromkeys(("title", "description", "license", "archive", "embedded"), (str, "text")),
    "min_textsegment_version": (str, "text"),
    **dict.fromkeys(("modalities", "structures", "urls", "sample_data"), (list, "a list")),
    **dict.fromkeys(("text_encoder", "timings"), (dict, "an object")),
    "deprecated": (bool, "true or false"),
}


def _entry(raw: Any, index: int, path: Path) -> CatalogEntry:
    where = f"models[{index}]"
    if not isinstance(raw, dict):
        raise _fail(path, where, "must be an object")
    missing = [f for f in REQUIRED_FIELDS if f not in raw]
    if missing:
        raise _fail(path, where, f"lacks the fields {missing}")
    model_id = raw["id"]
    parsed = parse_id(model_id) if isinstance(model_id, str) else None
    if not parsed:
        raise _fail(path, where, f"id {model_id!r} is not of the form <name>-v<major>.<minor>.<patch>")
    where = f"model '{model_id}'"
    for key in ("sha256", "weights_sha256", "card_sha256"):
        value = raw.get(key)
        if value is not None and not (isinstance(value, str) and SHA256_RE.match(value)):
            raise _fail(path, where, f"{key} must be 64 lower-case hex digits")
    if not isinstance(raw["size"], int) or isinstance(raw["size"], bool) or raw["size"] <= 0:
        raise _fail(path, where, "size must be a positive number of bytes")
    if not isinstance(raw["format_version"], int) or raw["format_version"] < 1:
        raise _fail(path, where, "format_version must be an integer >= 1")
    wrong = [
        f"{key} must be {what}"
        for key, (kinds, what) in _FIELD_TYPES.items()
        if key in raw and (raw[key] is not None or key in REQUIRED_FIELDS) and not isinstance(raw[key], kinds)
    ]
    if wrong:
        raise _fail(path, where, "; ".join(wrong))
    if not all(isinstance(v, str) for v in raw["modalities"] + (raw.get("structures") or [])):
        raise _fail(path, where, "modalities and structures must be lists of names")
    urls = raw.get("urls", [])
    if not isinstance(urls, list) or not all(isinstance(u, str) and u for u in urls):
        raise _fail(path, where, "urls must be a list of URLs")
    embedded = raw.get("embedded")
    if not urls and not embedded:
        raise _fail(path, where, "needs 'urls' (a downloadable archive) or 'embedded' (a folder beside the catalog)")
    fmt = raw.get("archive") or (archive_format(urls[0]) if urls else None)
    if urls and fmt not in ARCHIVE_FORMATS:
        raise _fail(path, where, f"archive format must be one of {ARCHIVE_FORMATS} (set 'archive' or the URL suffix)")
    embedded_path = None
    if embedded:
        rel = Path(embedded)
        if rel.is_absolute() or ".." in rel.parts:
            raise _fail(path, where, "embedded must be a path inside the catalog's folder")
        embedded_path = path.parent / rel
    structures = raw.get("structures")
    if structures is None:
        structures = _embedded_structures(embedded_path) if embedded_path is not None else []
    if not isinstance(structures, list) or not all(isinstance(n, str) for n in structures):
        raise _fail(path, where, "structures must be a list of names")
    return CatalogEntry(
        id=model_id,
        name=parsed[0],
        version=parsed[1],
        title=str(raw["title"]),
        description=str(raw["description"]),
        modalities=list(raw["modalities"]),
        structures=structures,
        sha256=raw["sha256"],
        size=raw["size"],
        format_version=raw["format_version"],
        text_encoder=dict(raw["text_encoder"]),
        license=str(raw["license"]),
        timings=dict(raw["timings"]),
        urls=list(urls),
        archive=fmt,
        weights_sha256=raw.get("weights_sha256"),
        card_sha256=raw.get("card_sha256"),
        min_textsegment_version=raw.get("min_textsegment_version"),
        embedded=embedded,
        embedded_path=embedded_path,
        sample_data=list(raw.get("sample_data") or []),
        deprecated=bool(raw.get("deprecated", False)),
        raw=raw,
    )


def load_catalog(path: Optional[PathLike] = None) -> Catalog:
    """Read and check a catalog file (default: :func:`default_catalog_path`). Raises :class:`CatalogError`.

    Example:
        >>> import json, tempfile
        >>> f = Path(tempfile.mkdtemp()) / "models.json"
        >>> _ = f.write_text(json.dumps({"catalog_version": 1, "default": None, "models": []}))
        >>> len(load_catalog(f).entries)
        0
    """
    path = Path(path) if path is not None else default_catalog_path()
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the read forever
            raise CatalogError(f"model catalog {path} is not a regular file (a folder, FIFO or device)")
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError as exc:
        raise CatalogError(f"model catalog {path} does not exist (set {CATALOG_ENV} to a catalog file)") from exc
    except (OSError, ValueError) as exc:
        raise CatalogError(f"model catalog {path} cannot be read: {exc}") from exc
    except RecursionError:
        raise CatalogError(f"model catalog {path} is nested too deeply to be a catalog; the file is damaged") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise CatalogError(f"catalog {path}: must be an object with a 'models' list")
    version = data.get("catalog_version", CATALOG_VERSION)
    if not isinstance(version, int) or version > CATALOG_VERSION:
        raise CatalogError(
            f"catalog {path} has catalog_version {version!r}; this TextSegment reads version {CATALOG_VERSION}: "
            "update the TextSegment extension"
        )
    entries = [_entry(raw, i, path) for i, raw in enumerate(data["models"])]
    ids = [e.id for e in entries]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise CatalogError(f"catalog {path}: the ids {dupes} are listed more than once")
    if data.get("default") is not None and not isinstance(data.get("default"), str):
        raise CatalogError(f"catalog {path}: default must be a model name or id (text), got {data['default']!r}")
    catalog = Catalog(entries, default=data.get("default"), path=path)
    default = catalog.default
    if default and catalog.get(default) is None and default not in catalog.names():
        raise CatalogError(f"catalog {path}: default {default!r} is neither an id nor a name in the catalog")
    return catalog
