"""The one progress signature and the one cancel exception of every long call (engine, downloads, batches, worker).

``progress(fraction, message)``: ``fraction`` in [0, 1], a short message. ``cancel() -> bool``: checked between two
steps; when it returns True the work stops by raising :class:`Cancelled`, and nothing half-done is kept.

Example:
    >>> check_cancel(lambda: False)
    >>> try:
    ...     check_cancel(lambda: True)
    ... except Cancelled as exc:
    ...     print(exc)
    cancelled
"""

from typing import Callable, Optional

ProgressFn = Optional[Callable[[float, str], None]]
CancelFn = Optional[Callable[[], bool]]


class Cancelled(RuntimeError):
    """The caller's ``cancel`` callable returned True (or the job was cancelled); the work stopped cleanly."""


def check_cancel(cancel: CancelFn) -> None:
    """Raise :class:`Cancelled` when ``cancel()`` is true."""
    if cancel is not None and cancel():
        raise Cancelled("cancelled")
