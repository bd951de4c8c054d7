"""The one SHA-256 of a file's bytes (a leaf module: data stores, the model zoo and the MLflow
tag that links a ``model.pt`` to its run all use it)."""

import hashlib
from pathlib import Path


def file_sha256(path: Path | str) -> str:
    """Hex SHA-256 of the file's bytes, read in blocks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
