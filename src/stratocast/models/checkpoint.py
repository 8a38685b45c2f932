"""Self-describing inference weights: weights + model config + geometry + statistics + version.

Everything needed to run the model is inside, so a forecast never depends on a config file
that may have changed since training, nor on shards rebuilt since: it normalises and
denormalises with the statistics in :class:`ModelCard` and checks the shards against it.
Two forms with the same content: ``model.pt`` (one torch file) and ``model.safetensors``
(weights only, loadable without pickle) with ``model.json`` beside it (everything else).
Both are written to temporary files and renamed, so a crash while saving never damages the
previous export. (The resumable training state is a different thing: see
stratocast.train.dcp_checkpoint.)
"""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import stratocast
from stratocast.config import quote
from stratocast.errors import StratocastError
from stratocast.models.base import Geometry, build_model
from stratocast.shards.layout import ChannelStats

# 2: the observing sites are run-time input, not part of the model (no station list saved)
FORMAT = "stratocast-checkpoint/2"
_SITE_FIELDS = ("station_lat", "station_lon", "station_elevation")


class CheckpointError(StratocastError, RuntimeError):
    pass


@dataclass(frozen=True)
class ModelCard:
    """What a checkpoint says of itself, typed: read once, then trusted by every caller."""

    path: Path
    model_name: str
    model_options: dict[str, Any]
    geometry: Geometry  # grid, channels, observed variables (no sites: run-time input)
    grid_stats: ChannelStats  # per channel: the model's normalisation of states
    obs_stats: ChannelStats  # per observed variable: its normalisation of observations
    time_step_hours: int
    history: int  # observation windows cycled before a forecast
    stratocast_version: str
    step: int | None = None
    train_config: dict[str, Any] | None = None
    val_rmse: dict[str, list[float]] | None = None

    @classmethod
    def from_payload(cls, path: Path, payload: dict[str, Any], geometry: Geometry) -> ModelCard:
        try:
            return cls(
                path=path,
                model_name=str(payload["model_name"]),
                model_options=dict(payload["model_options"]),
                geometry=geometry,
                grid_stats=ChannelStats(**payload["grid_stats"]),
                obs_stats=ChannelStats(**payload["obs_stats"]),
                time_step_hours=int(payload["time_step_hours"]),
                history=int(payload["history"]),
                stratocast_version=str(payload["stratocast_version"]),
                step=None if payload.get("step") is None else int(payload["step"]),
                train_config=payload.get("train_config"),
                val_rmse=payload.get("val_rmse"),
            )
        except (KeyError, TypeError, ValueError) as err:
            what = f"no {err}" if isinstance(err, KeyError) else f"{type(err).__name__}: {err}"
            raise CheckpointError(f"{path}: an incomplete description ({quote(what)})") from None


def _description(
    model_name: str, model_options: dict[str, Any], geometry: Geometry, extra: dict[str, Any]
) -> dict[str, Any]:
    # The stations the model was trained with are not saved: a forecast gives the model the
    # sites of its own observations (set_observation_sites).
    geo = {
        f.name: (v.tolist() if isinstance(v := getattr(geometry, f.name), np.ndarray) else v)
        for f in dataclasses.fields(geometry)
        if f.name not in _SITE_FIELDS
    }
    return {
        "format": FORMAT,
        "stratocast_version": stratocast.__version__,
        "model_name": model_name,
        "model_options": model_options,
        "geometry": geo,
        **extra,
    }


def save_checkpoint(
    path: Path,
    model: torch.nn.Module | dict[str, torch.Tensor],
    model_name: str,
    model_options: dict[str, Any],
    geometry: Geometry,
    extra: dict[str, Any],
) -> None:
    """``model``: the module or its full state dict (e.g. gathered from FSDP shards)."""
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    payload = {**_description(model_name, model_options, geometry, extra), "state_dict": state}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def export_safetensors(
    path: Path,
    state_dict: dict[str, torch.Tensor],
    model_name: str,
    model_options: dict[str, Any],
    geometry: Geometry,
    extra: dict[str, Any],
) -> Path:
    """Write ``path`` (.safetensors, the weights) and the same name with .json (the rest)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    meta_path = path.with_suffix(".json")
    description = _description(model_name, model_options, geometry, extra)
    tmp_meta = meta_path.with_suffix(".json.tmp")
    tmp_meta.write_text(json.dumps(description, indent=1))
    tmp = path.with_suffix(".safetensors.tmp")
    # safetensors refuses shared storage and non-contiguous views; a copy per tensor is cheap.
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}, tmp)
    tmp.replace(path)
    tmp_meta.replace(meta_path)
    return path


def _read_safetensors(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        raise CheckpointError(f"{path}: its description {meta_path.name} is missing beside it")
    try:
        payload: dict[str, Any] = json.loads(meta_path.read_text())
        payload["state_dict"] = load_file(path)
    except (json.JSONDecodeError, SafetensorError, OSError) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    return payload


_TORCH_ADVICE = ("Weights only load failed", "Check the documentation", "Please file an issue")


def _load_failure(err: Exception) -> str:
    """torch's weights-only refusal is a page of advice (including "set weights_only=False",
    exactly what must not be done with a file from elsewhere); keep only the reason."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", str(err))]
    reason = [p for p in paragraphs if p and not p.startswith(_TORCH_ADVICE)]
    if str(err).startswith("Weights only load failed"):
        why = "; ".join(r.removeprefix("WeightsUnpickler error: ") for r in reason)
        return f"refused by the weights-only loader ({quote(why or 'no reason given', 200)})"
    return f"{type(err).__name__}: {quote(reason[0] if reason else '', 200)}"


def load_checkpoint(path: Path) -> tuple[torch.nn.Module, ModelCard]:
    """Read ``model.pt`` or ``model.safetensors`` (+ its ``model.json``)."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: run `stratocast train` first")
    if path.suffix == ".safetensors":
        payload = _read_safetensors(path)
    else:
        try:
            with warnings.catch_warnings():  # its protocol warning on a foreign file is noise
                warnings.simplefilter("ignore", UserWarning)
                payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for a damaged file; name the file
            raise CheckpointError(f"cannot read checkpoint {path}: {_load_failure(err)}") from None
        if not isinstance(payload, dict):
            raise CheckpointError(f"{path}: holds {type(payload).__name__}, not a checkpoint")
    if payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {payload.get('format')!r}, expected {FORMAT!r}")
    try:  # a file in the right format can still describe nothing we can build
        g = payload["geometry"]
        arrays: dict[str, Any] = {
            k: np.asarray(v)
            for k, v in g.items()
            if k not in ("channels", "obs_variables", *_SITE_FIELDS)
        }
        arrays.update({k: np.zeros(0) for k in _SITE_FIELDS})
        # Geometry.__post_init__ turns the saved 0-d periodic_lon array back into bool/None
        geometry = Geometry(
            channels=tuple(g["channels"]), obs_variables=tuple(g["obs_variables"]), **arrays
        )
        model = build_model(payload["model_name"], geometry, payload["model_options"])
        model.load_state_dict(payload["state_dict"])
    except StratocastError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
        what = f"no {err}" if isinstance(err, KeyError) else f"{type(err).__name__}: {err}"
        raise CheckpointError(
            f"{path}: cannot build the model it describes ({quote(what)})"
        ) from None
    card = ModelCard.from_payload(path, payload, geometry)
    model.eval()
    return model, card
