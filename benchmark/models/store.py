"""The model store on disk: `models/<id>/` directories, their manifests, integrity checks, downloads.

Every model, whatever its source, ends up as one directory `models/<id>/`:
  model.safetensors   its state dict (tensors only: loading can never run code)
  manifest.json       source, role, spec, architecture, sha256 of model.safetensors, how it was obtained

A directory is written under a temporary name and swapped into place in one rename, so an
interrupted fetch leaves the previous one intact.  Torch-free: what reads and writes tensors is
`zoo.py` and `checkpoints.py`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from ..errors import NFBenchError
from ..storage import code_version, network_timeout, read_json, sha256_file, write_json

MODELS_DIR = Path("models")
CHECKPOINT = "model.safetensors"
MANIFEST = "manifest.json"


def model_dir(model_id: str, root: Path = MODELS_DIR) -> Path:
    return Path(root) / model_id


def entry_root(spec: Mapping, root: Path = MODELS_DIR) -> Path:
    """The folder a model's files go in under `root`: `root` itself, or `<root>/<entry>/` for the
    models of an entry with seeds (the store's, and the zoo's of published checkpoints)."""
    return Path(root) / spec["group"] if "group" in spec else Path(root)


def read_manifest(model_id: str, root: Path = MODELS_DIR) -> dict | None:
    path = model_dir(model_id, root) / MANIFEST
    return read_json(path) if path.is_file() else None


def status(model_id: str, root: Path = MODELS_DIR) -> str:
    """present (checkpoint matches its manifest), missing, corrupt, or stale: the source checkpoint
    it was made from (a RobustBench or torchvision file, still on disk) has other bytes now."""
    manifest = read_manifest(model_id, root)
    checkpoint = model_dir(model_id, root) / CHECKPOINT
    if manifest is None or not checkpoint.is_file():
        return "missing"
    if sha256_file(checkpoint) != manifest["sha256"]:
        return "corrupt"
    source = manifest.get("source_checkpoint") or {}
    if "path" in source and Path(source["path"]).is_file() and sha256_file(Path(source["path"])) != source["sha256"]:
        return "stale"
    return "present"


def _reject(path: Path, actual: str) -> Path:
    """Move a file that failed its check aside (kept for inspection) and return the new path."""
    rejected = path.with_name(f"{path.name}.rejected-{actual[:12]}")
    os.replace(path, rejected)
    return rejected


def verify_sha256(path: Path, expected: str, what: str, *, keep_aside: bool = True,
                  prefix_only: bool = False, actual: str | None = None) -> None:
    """Refuse a file whose sha256 (`actual`, computed when not given) differs from `expected`
    (or does not start with it).

    Files nfbench manages (downloads, models/) are moved aside as `<name>.rejected-<sha>` so the
    next fetch starts clean and the bad file can still be inspected; a user's own file, or one
    that ships with the repository, stays put.
    """
    actual = actual or sha256_file(path)
    if actual.startswith(expected) if prefix_only else actual == expected:
        return
    kept = f"; the file is kept as {_reject(path, actual)} for inspection" if keep_aside else ""
    raise NFBenchError(f"{what}: sha256 of {path} is {actual}, expected {expected}"
                       f"{'…' if prefix_only else ''}; refused{kept}")


def is_html_page(path: Path) -> bool:
    """Whether a file is a web page: what Google Drive serves in place of a file past its quota."""
    with open(path, "rb") as f:
        return f.read(512).lstrip().lower().startswith((b"<!doctype", b"<html"))


def download(url: str, dest: Path, what: str, *, fetcher=None) -> None:
    """Download to a temporary name, refuse an HTML error page, then rename onto `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        with network_timeout():
            if fetcher is not None:
                fetcher(str(tmp))
            else:
                with urllib.request.urlopen(url) as response, open(tmp, "wb") as out:
                    shutil.copyfileobj(response, out)
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise OSError("nothing was downloaded")
        if is_html_page(tmp):
            raise OSError("the server answered with an HTML page (quota or permission page), not a checkpoint")
        os.replace(tmp, dest)
    except NFBenchError:
        raise
    except Exception as exc:   # urllib, gdown and requests each raise their own types
        reason = getattr(exc, "reason", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        raise NFBenchError(f"{what}: the checkpoint is not at {dest} and downloading it from {url} failed "
                           f"({str(reason)[:200]}); put the file at {dest} and rerun") from exc
    finally:
        tmp.unlink(missing_ok=True)


def install(model_id: str, root: Path, write_checkpoint: Callable[[Path], None], manifest: dict) -> dict:
    """Write the checkpoint (`write_checkpoint(path)`) and manifest.json into a fresh directory,
    then swap it into place; returns the manifest as written (with id, sha256, code version)."""
    final = model_dir(model_id, root)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model_id}.", dir=final.parent))
    try:
        write_checkpoint(staging / CHECKPOINT)
        manifest = {**manifest, "id": model_id, "checkpoint": CHECKPOINT,
                    "sha256": sha256_file(staging / CHECKPOINT), "code_version": code_version()}
        write_json(staging / MANIFEST, manifest)
        old = final.with_name(f".{model_id}.old")
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def manifest_summary(manifest: Mapping) -> dict:
    """The small, committed record of a fetched model: identity and how it was obtained."""
    keep = {k: manifest[k] for k in ("id", "source", "role", "sha256") if k in manifest}
    return {**keep, "obtained": obtained(manifest),
            **({"training": manifest["training"]} if "training" in manifest else {})}


def obtained(manifest: Mapping) -> str:
    """How a fetched model came to be: published (checkpoint shipped with the suite), trained
    (here, by its recipe) or imported (downloaded or read from a file)."""
    return "published" if "published" in manifest else "trained" if "training" in manifest else "imported"
