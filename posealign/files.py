"""Reading torch files and writing any file without ever leaving half of it behind.

``load_torch_file`` turns every way a torch file can be unreadable into one ``UserError`` line that
names the file and the fix. The ``atomic_*`` writers write to a temporary name in the same folder,
sync it to disk and rename it over the target, which POSIX makes atomic: a crash (or SIGKILL) while
writing leaves the previous version intact. The file gets the mode a plain ``open`` would give it
(0666 less the umask), whatever mode the library that wrote the temporary file chose.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from posealign.errors import UserError


def load_torch_file(path: str | Path, what: str, fix: str, *, missing_fix: str | None = None) -> Any:
    """``torch.load`` onto the CPU, or ``"{path}: {what} not found; {missing_fix}"`` /
    ``"{path}: cannot read {what} ({error type}); {fix}"`` as a ``UserError``.

    Always ``weights_only``, whoever wrote the file: only tensors, plain containers and numbers, and
    numeric numpy arrays (the RNG states of checkpoints written before they were stored as tensors)
    are unpickled; a file whose pickle would call anything else, and so could run any code, is
    refused with ``"{path}: refused to load {what}: ..."`` and nothing of it runs.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found; {missing_fix or fix}")
    import torch

    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a file it cannot read
        refused = _refused_global(error)
        if refused is not None:
            raise UserError(
                f"{path}: refused to load {what}: its pickle would call {refused}, and a pickle can run any code "
                f"that way; only tensors and plain data are read from torch files; {fix}"
            ) from None
        raise UserError(f"{path}: cannot read {what} ({type(error).__name__}); {fix}") from None


def _numpy_array_globals() -> list:
    """What unpickling a numeric numpy array needs (its constructor, class and dtypes): builds data, runs no code."""
    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    codes = "?" + np.typecodes["AllInteger"] + np.typecodes["AllFloat"]
    return [_reconstruct, np.ndarray, np.dtype, *{type(np.dtype(code)) for code in codes}]


def _refused_global(error: Exception) -> str | None:
    """The callable a ``weights_only`` load refused (``posix.system``), None when the file is unreadable otherwise."""
    text = str(error)
    if "Weights only load failed" not in text:
        return None
    match = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"got <class '([\w.]+)'>", text)
    return match.group(1) if match else "something that is not plain data"


@contextmanager
def atomic_replace(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` to write; when the block succeeds it replaces ``path``.

    The temporary file is hidden (``.NAME.tmp``) and removed when the block fails.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.touch()
    except OSError as error:
        raise UserError(
            f"{path}: cannot write here ({error.strerror or type(error).__name__}); choose another path"
        ) from None
    try:
        yield temporary
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_replace(path) as temporary:
        temporary.write_text(text)


def atomic_write_json(path: str | Path, payload: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(payload, indent=indent))


def atomic_torch_save(payload: Any, path: str | Path) -> None:
    """``torch.save`` (same argument order), atomically."""
    import torch

    with atomic_replace(path) as temporary:
        torch.save(payload, temporary)
