"""Checkpoint files: written atomically and verified, the previous one kept, loaded without running code.

A trial directory holds `last.pt` (the latest epoch's state) and `previous.pt` (the one before). A new
checkpoint is written beside them, read back and only then put in place, so at every instant some complete,
verified checkpoint is on disk: a kill at any point, a torn copy or a corrupted `last.pt` falls back to
`previous.pt` and loses at most one epoch.

Loading uses `torch.load(weights_only=True)`, which admits tensors and plain Python values only. Results
folders live on shared filesystems; a planted pickle must be refused, never run. Everything the engine saves
is therefore a tensor (RNG states are uint8 tensors), a number, a string, or a list/dict of those.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch

LATEST = "last.pt"
PREVIOUS = "previous.pt"


class CheckpointError(RuntimeError):
    """No usable checkpoint: one line naming the file, what is wrong with it, and the fix."""


def save(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` so that a complete, verified checkpoint is always on disk.

    The new file is written under a temporary name, fsynced and loaded back (weights_only, as it will be
    resumed); then the current `path` becomes `previous.pt` and the new file takes its place.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(buffer.getvalue())
        f.flush()
        os.fsync(f.fileno())
    try:
        _read(tmp)  # what resume will do; a write the disk mangled must not replace a good checkpoint
    except CheckpointError:
        tmp.unlink(missing_ok=True)
        raise
    previous = path.with_name(PREVIOUS)
    if path.is_file():
        os.replace(path, previous)  # killed here: no last.pt, and load() takes previous.pt
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def load(path: Path, map_location: Any = "cpu", warn=None) -> dict[str, Any] | None:
    """The state in `path`, or in `previous.pt` beside it when `path` is missing, torn or refused.

    None when neither file exists (the trial starts afresh). `warn(line)` hears about a fallback (default:
    stderr). Raises CheckpointError when a checkpoint exists but none can be loaded.
    """
    previous = path.with_name(PREVIOUS)
    candidates = [p for p in (path, previous) if p.is_file()]
    if not candidates:
        return None
    errors = []
    for candidate in candidates:
        try:
            state = _read(candidate, map_location)
        except CheckpointError as err:
            errors.append(err)
            continue
        if errors or candidate != path:
            why = f" ({errors[0]})" if errors else f" ({path.name} is missing)"
            (warn or _stderr)(f"resuming from {candidate}, one epoch earlier{why}")
        return state
    raise CheckpointError(f"{errors[0]}; no earlier checkpoint to fall back to; fix: delete {path} to start the "
                          f"trial afresh, then run the suite again with --retry-failed")


def discard_previous(path: Path) -> None:
    """A finished trial needs only its final checkpoint."""
    path.with_name(PREVIOUS).unlink(missing_ok=True)


def _read(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refused an object: the file was not written by mixbench
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: refused to load: it holds objects other than tensors and plain values, "
                              f"which a mixbench checkpoint never does ({first})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({first})") from None
    if not isinstance(state, dict) or "epoch" not in state:
        raise CheckpointError(f"{path}: not a mixbench checkpoint (no epoch in it)")
    return state


def _fsync_dir(directory: Path) -> None:
    """Make the renames durable: a crash right after save() must not bring back the old names."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _stderr(line: str) -> None:
    print(f"mixbench: {line}", file=sys.stderr, flush=True)
