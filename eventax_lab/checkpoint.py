"""Checkpoint files: the network, the optimizer state and a JSON header in one atomically written file.

Layout of a `.ckpt` file: the 8-byte magic `EVTXCKPT`, the header length as an
8-byte little-endian integer, the header as UTF-8 JSON (epoch, step, best metric,
metric history, seed), then the array leaves of `(network, opt_state)` written by
`equinox.tree_serialise_leaves`. Reading the leaves back needs a pytree of the same
structure, which the trainer rebuilds from the run config.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import equinox as eqx

logger = logging.getLogger(__name__)

MAGIC = b"EVTXCKPT"
FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"
BEST = "best.ckpt"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, or does not fit the run config."""


def save_checkpoint(path: str | os.PathLike, network: Any, opt_state: Any, header: dict) -> Path:
    """Write a checkpoint so that `path` is either the old or the new file, never a partial one.

    The file is written under a temporary name in the same folder, flushed to disk,
    and renamed over `path`. An exception or Ctrl-C while writing removes the
    temporary file and leaves `path` as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"format_version": FORMAT_VERSION, **header}
    header_bytes = json.dumps(header, allow_nan=True).encode("utf-8")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as stream:
            stream.write(MAGIC)
            stream.write(struct.pack("<Q", len(header_bytes)))
            stream.write(header_bytes)
            eqx.tree_serialise_leaves(stream, (network, opt_state))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def _fsync_directory(directory: Path) -> None:
    # Makes the rename durable. Some file systems do not allow opening a directory.
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _read_header(stream, path: Path) -> dict:
    magic = stream.read(len(MAGIC))
    if magic != MAGIC:
        raise CheckpointError(f"{path} is not an eventax-lab checkpoint (it does not start with {MAGIC!r}).")
    (length,) = struct.unpack("<Q", stream.read(8))
    try:
        header = json.loads(stream.read(length).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} has a corrupt header: {error}.") from error
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version={version}, but this version of eventax-lab reads "
            f"format_version={FORMAT_VERSION}."
        )
    return header


def read_header(path: str | os.PathLike) -> dict:
    """Return the JSON header of a checkpoint without reading its arrays."""
    path = Path(path)
    with open(path, "rb") as stream:
        return _read_header(stream, path)


def load_checkpoint(path: str | os.PathLike, network_like: Any, opt_state_like: Any) -> tuple[Any, Any, dict]:
    """Read a checkpoint into pytrees shaped like `network_like` and `opt_state_like`.

    **Returns:** `(network, opt_state, header)`.

    **Raises:** `CheckpointError` when the file is not a checkpoint, or when its arrays
    do not fit the given pytrees (a different model, size or optimizer).
    """
    path = Path(path)
    with open(path, "rb") as stream:
        header = _read_header(stream, path)
        try:
            network, opt_state = eqx.tree_deserialise_leaves(stream, (network_like, opt_state_like))
        except (RuntimeError, ValueError, OSError, EOFError) as error:
            raise CheckpointError(
                f"{path} does not fit the network and optimizer of this config ({error}). Resume "
                "with the model, data, optimizer and trainer.dtype settings of the run that wrote it."
            ) from error
    return network, opt_state, header


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """Return the checkpoint file for `path`: a `.ckpt` file, or a run directory's last checkpoint.

    **Raises:** `CheckpointError` naming the path when no checkpoint is there.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(
            f"resume={str(path)!r} does not exist. Pass the directory of an earlier run, "
            f"which contains {CHECKPOINT_DIR}/{LAST}, or a .ckpt file."
        )
    candidates = [path, path / CHECKPOINT_DIR / LAST, path / LAST]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise CheckpointError(
        f"resume={str(path)!r} contains no checkpoint. Pass a run directory that contains "
        f"{CHECKPOINT_DIR}/{LAST}, or a .ckpt file."
    )


def copy_checkpoint(source: Path, destination: Path) -> None:
    """Copy a checkpoint file with the same all-or-nothing guarantee as `save_checkpoint`."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
