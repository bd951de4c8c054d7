"""Expected failures: each carries one line for people (what, where, how to fix)."""


class OccluferError(Exception):
    """Base class of the errors a stage or command reports without a traceback."""
