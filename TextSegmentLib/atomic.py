"""Replace a file or folder only after its replacement is complete: nothing is lost on failure."""

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional


def replace_dir(new: Path, target: Path, aside_parent: Optional[Path] = None) -> None:
    """Move the finished folder ``new`` to ``target``.

    An existing ``target`` is first moved aside (into ``aside_parent``, default its own parent) and deleted only after
    ``new`` is in place; if that move fails the old folder is put back. Both paths must be on one file system.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "new").mkdir(); (root / "old").mkdir(); _ = (root / "new" / "f").write_text("v2")
        >>> replace_dir(root / "new", root / "old"); (root / "old" / "f").read_text()
        'v2'
    """
    new, target = Path(new), Path(target)
    if not target.exists():
        os.replace(new, target)
        return
    parent = Path(aside_parent) if aside_parent is not None else target.parent
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=str(parent)))
    os.rmdir(old)
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_file(path: Path, suffix: str = "") -> Iterator[str]:
    """Yield a temporary file name next to ``path``; when the block succeeds it is renamed to ``path``, when it
    raises the temporary file is removed and ``path`` is untouched. Checks inside the block run before the rename.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "report.json"
        >>> with atomic_file(target) as tmp:
        ...     _ = Path(tmp).write_text("{}")
        >>> target.read_text()
        '{}'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=str(path.parent))
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
