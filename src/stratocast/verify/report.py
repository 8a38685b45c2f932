"""One self-contained HTML report: PNGs are embedded as base64 data URIs so it works offline."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from stratocast.verify.config import EXTRA_UNITS
from stratocast.verify.scorecard import rmse_wide
from stratocast.vocab.variables import VARIABLES


@dataclass(frozen=True)
class MaskSummary:
    """What the scores were computed on, for the report and the scorecard attributes."""

    n_stations_requested: int
    n_stations_with_obs: int
    n_inits: int
    init_start: str
    init_end: str
    init_hours: Sequence[int]
    tolerance_minutes: float
    lapse_rate: float
    climatology_period: str
    climatology_min_samples: int
    lead_hours: Sequence[int] = ()
    variables: Sequence[str] = ()
    #: variable → why it is not scored (the forecast or the observations lack it)
    skipped: Mapping[str, str] = field(default_factory=dict)
    station_set: str = ""
    station_ids: Sequence[str] = ()


def _template() -> jinja2.Template:
    text = resources.files("stratocast.verify").joinpath("templates/report.html").read_text()
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(text)


def _fmt(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.3f}"


def _rmse_tables(scorecard: pd.DataFrame) -> list[dict[str, Any]]:
    tables = []
    for variable in dict.fromkeys(scorecard["variable"]):
        wide = rmse_wide(scorecard, str(variable))
        counts = scorecard[scorecard["variable"] == variable].groupby("lead_hours")["n"].max()
        rows = []
        for lead, values in wide.iterrows():
            finite = values[np.isfinite(values.to_numpy())]
            best = finite.min() if len(finite) else np.nan
            cells = [{"text": _fmt(v), "best": bool(v == best)} for v in values.to_numpy()]
            rows.append({"lead": lead, "cells": cells, "n": int(counts.get(lead, 0))})
        tables.append(
            {
                "variable": variable,
                "units": units(str(variable)),
                "systems": list(wide.columns),
                "rows": rows,
            }
        )
    return tables


def _masks(scorecard: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for variable, rows in scorecard.groupby("variable", sort=False):
        out.append(
            {
                "variable": variable,
                "n_stations": int(rows["n_stations"].max()),
                "n": int(rows.groupby("lead_hours")["n"].max().sum()),
                "valid_start": str(rows["valid_start"].min()),
                "valid_end": str(rows["valid_end"].max()),
            }
        )
    return out


def units(variable: str) -> str:
    """Units of a verified variable (canonical table, else the verification's own names)."""
    var = VARIABLES.get(variable)
    return var.units if var is not None else EXTRA_UNITS.get(variable, "")


def _embed(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def render_report(
    scorecard: pd.DataFrame,
    plots: Sequence[Path],
    mask: MaskSummary,
    config: Mapping[str, Any],
    path: Path,
    title: str = "stratocast verification",
) -> Path:
    """Write the HTML report to ``path``."""
    from stratocast import __version__

    html = _template().render(
        title=title,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        systems=list(dict.fromkeys(scorecard["system"])),
        reference=str(scorecard["reference"].iloc[0]) if len(scorecard) else "",
        masks=_masks(scorecard),
        tables=_rmse_tables(scorecard),
        plots=[{"name": p.name, "data": _embed(p)} for p in plots],
        config_json=json.dumps(dict(config), indent=2, default=str, sort_keys=True),
        **mask.__dict__,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
