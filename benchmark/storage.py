"""Files the stages write: atomically (temporary name, then rename), with content hashes.

An interrupted run therefore never leaves a half-written file under a final name.  Downloads
run under one socket timeout, so a machine without network fails fast instead of hanging.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import __version__

DOWNLOAD_TIMEOUT_S = 20.0   # seconds without an answer before a download is given up


@contextlib.contextmanager
def network_timeout(seconds: float = DOWNLOAD_TIMEOUT_S) -> Iterator[None]:
    """Socket timeout for the downloads inside the block (restored after)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Stable JSON (sorted keys, fixed float format) so equal content gives equal bytes."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a syntax error becomes one line naming the file and position."""
    import yaml

    from .errors import NFBenchError

    path = Path(path)
    if not path.is_file():
        raise NFBenchError(f"{path}: file not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise NFBenchError(f"{path}:{where}: malformed YAML ({problem})") from exc


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-able object, independent of key order (for params and specs)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def code_version() -> str:
    """Package version plus the git commit of the checkout (with `+dirty` when modified)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here,
                                capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
                               cwd=here, capture_output=True, text=True, timeout=5).stdout.strip()
        return f"{__version__}+{commit}" + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return __version__


def tensors_to_bytes(tensors: dict, meta: dict) -> bytes:
    """safetensors bytes of `tensors` with JSON metadata, identical for identical content.

    The metadata goes in one entry: safetensors keeps metadata in a hash map whose order varies
    from call to call.
    """
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in tensors.items()},
                metadata={"nfbench": json.dumps(meta, sort_keys=True, allow_nan=False)})


def tensors_from_file(path: str | os.PathLike, what: str) -> tuple[dict, dict]:
    """(tensors, metadata) of a file written with `tensors_to_bytes`."""
    from safetensors import SafetensorError, safe_open

    from .errors import NFBenchError

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["nfbench"])
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:   # a damaged header too
        raise NFBenchError(f"{path}: not a {what} written by nfbench ({exc})") from exc


def safetensors_metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of safetensors bytes, read from the header alone (no torch, no numpy)."""
    if len(data) < 8:
        raise ValueError("too short for a safetensors file")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise ValueError("header length beyond the end of the file")
    header = json.loads(data[8:8 + size])
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return dict(header.get("__metadata__") or {})
