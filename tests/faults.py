"""Helpers that inject faults for the tests (issue #17: every fault ends in one line)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` made unwritable for the duration: mode 444, and for root (who ignores modes)
    the immutable attribute; skips the test where neither can make it read-only."""
    path.chmod(0o444)
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(path)], capture_output=True,
                                    check=False).returncode != 0:
        path.chmod(0o644)
        pytest.skip("running as root and `chattr +i` is not available: cannot make a file "
                    "read-only")
    try:
        yield path
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=False)
        path.chmod(0o644)


def one_line(stderr: str) -> str:
    """The single line a failed stage or command printed (fails the test otherwise)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]
