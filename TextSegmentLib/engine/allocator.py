"""Keep freed memory in the process for the next prompt (glibc's allocator on Linux).

A prompt allocates and frees the same few hundred MB of tensors and arrays (a batch's image tokens are 4 MB each,
a plane's logits 8 MB). With glibc's defaults much of it goes back to the operating system when freed, and every page
of it faults in again, zeroed, at the next allocation: on a brain, 40,000 page faults and a fifth of a further
prompt's time (docs/engine.md). :func:`keep_freed_memory` raises the two glibc thresholds (``mallopt``) so that blocks
up to 32 MB come from the heap and up to ``trim_mb`` of free heap stays mapped. It is process-wide and changes no
result; elsewhere than glibc it does nothing. ``TEXTSEGMENT_KEEP_FREED_MEMORY=0`` in the environment turns it off.
"""

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_MAX_MB = 32  # glibc refuses a larger mmap threshold on 64-bit systems
ENV = "TEXTSEGMENT_KEEP_FREED_MEMORY"

_applied = False


def keep_freed_memory(trim_mb: int = 256) -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True when they are (now or before) raised.

    Example:
        >>> isinstance(keep_freed_memory(), bool)
        True
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux") or os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_MAX_MB << 20)) and bool(mallopt(M_TRIM_THRESHOLD, trim_mb << 20))
    log.debug("glibc thresholds raised: %s", _applied)
    return _applied


__all__ = ["keep_freed_memory"]
