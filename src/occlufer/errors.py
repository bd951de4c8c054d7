"""Expected failures: each carries one line for people (what, where, how to fix)."""

import signal


class OccluferError(Exception):
    """Base class of the errors a stage or command reports without a traceback."""


def ignore_interrupt() -> None:
    """Pool initializer: workers ignore SIGINT, so Ctrl-C ends in the parent's one line."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def first_line(exc: BaseException, limit: int | None = 200) -> str:
    """The first line of an exception's message (its class name when it has none), cut to
    ``limit`` characters: what a one-line error quotes of the cause."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if limit is None else line[:limit]
