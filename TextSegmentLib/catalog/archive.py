"""Safe unpacking of ``.zip`` and ``.tar.gz`` model archives.

Every member is checked before anything is written: no absolute paths, no ``..``, no drive letters, no links,
devices or other special files, and a bound on the unpacked size (archive bombs). One bad member refuses the whole
archive with :class:`UnsafeArchive`; members are then written one by one below the target folder.
"""

import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import List, Optional, Tuple

from .catalog import archive_format
from .errors import UnsafeArchive

#: unpacked size limit (a bundle is weights + card + maybe a text encoder; far below this)
MAX_UNPACKED_BYTES = 16 << 30


def _safe_name(name: str, archive: Path) -> Optional[PurePosixPath]:
    """The member path relative to the target, or None for the archive root; UnsafeArchive when it escapes."""
    clean = name.replace("\\", "/")
    path = PurePosixPath(clean)
    if clean.startswith("/") or path.is_absolute() or (path.parts and ":" in path.parts[0]):
        raise UnsafeArchive(f"{archive.name} holds the absolute path {name!r}; refused, nothing was unpacked")
    if ".." in path.parts:
        raise UnsafeArchive(f"{archive.name} holds the path {name!r} that leaves its folder; refused")
    parts = [p for p in path.parts if p not in ("", ".")]
    return PurePosixPath(*parts) if parts else None


def _plan_zip(zf: zipfile.ZipFile, archive: Path) -> List[Tuple[zipfile.ZipInfo, Optional[PurePosixPath]]]:
    plan = []
    for info in zf.infolist():
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archiver recorded no Unix file type
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArchive(f"{archive.name}: {info.filename!r} is a link or special file; refused")
        plan.append((info, _safe_name(info.filename, archive)))
    return plan


def _plan_tar(tf: tarfile.TarFile, archive: Path) -> List[Tuple[tarfile.TarInfo, Optional[PurePosixPath]]]:
    plan = []
    for info in tf.getmembers():
        if not (info.isfile() or info.isdir()):
            raise UnsafeArchive(f"{archive.name}: {info.name!r} is a link or special file; refused")
        plan.append((info, _safe_name(info.name, archive)))
    return plan


def safe_unpack(archive: Path, target: Path, fmt: Optional[str] = None, max_bytes: int = MAX_UNPACKED_BYTES) -> Path:
    """Unpack ``archive`` (``zip`` or ``tar.gz``, else guessed from the name) into the new folder ``target``.

    Example:
        >>> import tempfile, zipfile
        >>> d = Path(tempfile.mkdtemp())
        >>> with zipfile.ZipFile(d / "b.zip", "w") as z:
        ...     z.writestr("bundle/model.json", "{}")
        >>> sorted(p.name for p in safe_unpack(d / "b.zip", d / "out").rglob("*"))
        ['bundle', 'model.json']
    """
    archive, target = Path(archive), Path(target)
    fmt = fmt or archive_format(archive.name)
    target.mkdir(parents=True, exist_ok=False)
    root = target.resolve()
    try:
        if fmt == "zip":
            _unpack_zip(archive, root, max_bytes)
        elif fmt == "tar.gz":
            _unpack_tar(archive, root, max_bytes)
        else:
            raise UnsafeArchive(f"{archive.name}: unknown archive format {fmt!r}; use .zip or .tar.gz")
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def _destination(root: Path, rel: PurePosixPath) -> Path:
    dest = root.joinpath(*rel.parts)
    if root not in dest.resolve().parents:
        raise UnsafeArchive(f"member {str(rel)!r} resolves outside the target folder; refused")
    return dest


def _unpack_zip(archive: Path, root: Path, max_bytes: int) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnsafeArchive(f"{archive.name} is not a readable zip file ({exc}); download it again") from exc
    with zf:
        plan = _plan_zip(zf, archive)
        if sum(info.file_size for info, _ in plan) > max_bytes:
            raise UnsafeArchive(f"{archive.name} unpacks to more than {max_bytes} bytes; refused")
        written = 0
        for info, rel in plan:
            if rel is None:
                continue
            dest = _destination(root, rel)
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as out:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    written += len(chunk)
                    if written > max_bytes:
                        raise UnsafeArchive(f"{archive.name} unpacks to more than {max_bytes} bytes; refused")
                    out.write(chunk)


def _unpack_tar(archive: Path, root: Path, max_bytes: int) -> None:
    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise UnsafeArchive(f"{archive.name} is not a readable tar archive ({exc}); download it again") from exc
    with tf:
        try:
            plan = _plan_tar(tf, archive)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise UnsafeArchive(f"{archive.name} is damaged ({exc}); download it again") from exc
        if sum(info.size for info, _ in plan) > max_bytes:
            raise UnsafeArchive(f"{archive.name} unpacks to more than {max_bytes} bytes; refused")
        for info, rel in plan:
            if rel is None:
                continue
            dest = _destination(root, rel)
            if info.isdir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(info)
            if src is None:
                raise UnsafeArchive(f"{archive.name}: {info.name!r} cannot be read; refused")
            with src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)


def find_bundle_root(folder: Path) -> Path:
    """The folder holding ``model.json``: ``folder`` itself or its single sub-folder (archives of a folder)."""
    folder = Path(folder)
    if (folder / "model.json").is_file():
        return folder
    children = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if len(children) == 1 and children[0].is_dir() and (children[0] / "model.json").is_file():
        return children[0]
    return folder
