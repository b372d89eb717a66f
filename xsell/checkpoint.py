"""Model files: weights in safetensors, settings in JSON, checked before anything is loaded.

A checkpoint is a folder with ``model.safetensors`` and ``config.json``. The config
records the format version, the model class and its hyperparameters, the shapes it was
built with, and the SHA-256 of the weights file, so :func:`load_checkpoint` can refuse a
truncated or edited file, or a config that does not match what the caller expects, with an
error that says which and why -- instead of failing deep inside ``torch`` or, worse,
loading silently wrong weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from xsell.fileio import atomic_write, save_json

FORMAT = "xsell-checkpoint/1"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class CheckpointError(ValueError):
    """A checkpoint folder is missing, damaged, or does not match the expected model."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(folder: str | os.PathLike, tensors: dict[str, torch.Tensor],
                    config: dict) -> Path:
    """Write weights and config (each atomically; the config last, naming the weights' hash)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(folder / WEIGHTS, lambda tmp: save_file(tensors, tmp))
    save_json({"format": FORMAT, **config, "weights_sha256": _sha256(folder / WEIGHTS)},
              folder / CONFIG)
    return folder


def load_checkpoint(folder: str | os.PathLike,
                    expect: dict | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and verify a checkpoint.

    Parameters
    ----------
    folder : path-like
        Written by :func:`save_checkpoint`.
    expect : dict, optional
        Config entries that must match (e.g. ``{"model": "TwoTower"}``).

    Returns
    -------
    tensors : dict of str to torch.Tensor
    config : dict

    Raises
    ------
    CheckpointError
        Naming the file and what is wrong with it.
    """
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG, folder / WEIGHTS
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (not a checkpoint folder?)")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{config_path}: not valid JSON ({err})") from err
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{config_path}: format {config.get('format')!r}, "
                              f"expected {FORMAT!r}")
    for key, value in (expect or {}).items():
        if config.get(key) != value:
            raise CheckpointError(f"{config_path}: {key} is {config.get(key)!r}, "
                                  f"expected {value!r}")
    if _sha256(weights_path) != config.get("weights_sha256"):
        raise CheckpointError(f"{weights_path}: contents do not match the hash in "
                              f"{CONFIG} (corrupt or replaced file)")
    try:
        tensors = load_file(weights_path)
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"{weights_path}: cannot be read as safetensors ({err})") from err
    return tensors, config
