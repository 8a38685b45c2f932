"""Self-describing checkpoints: weights + model config + geometry + statistics + version.

Everything needed to run the model is inside, so a forecast never depends on a config file
that may have changed since training. Written to a temporary file and renamed, so a crash
while saving never damages the previous checkpoint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

import stratocast
from stratocast.models.base import Geometry, build_model

FORMAT = "stratocast-checkpoint/1"


class CheckpointError(RuntimeError):
    pass


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    model_name: str,
    model_options: dict[str, Any],
    geometry: Geometry,
    extra: dict[str, Any],
) -> None:
    geo = {
        f.name: (v.tolist() if isinstance(v := getattr(geometry, f.name), np.ndarray) else v)
        for f in dataclasses.fields(geometry)
    }
    payload = {
        "format": FORMAT,
        "stratocast_version": stratocast.__version__,
        "model_name": model_name,
        "model_options": model_options,
        "geometry": geo,
        "state_dict": model.state_dict(),
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> tuple[torch.nn.Module, Geometry, dict[str, Any]]:
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: run `stratocast train` first")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file; name the file
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    if payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {payload.get('format')!r}, expected {FORMAT!r}")
    g = payload["geometry"]
    arrays = {k: np.asarray(v) for k, v in g.items() if k not in ("channels", "obs_variables")}
    geometry = Geometry(
        channels=tuple(g["channels"]), obs_variables=tuple(g["obs_variables"]), **arrays
    )
    model = build_model(payload["model_name"], geometry, payload["model_options"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, geometry, payload
