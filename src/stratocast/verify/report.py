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
    #: Which regions are scored (or why AR6 regions are not).
    regions: str = ""
    #: Gridded scores against an analysis: analysis, climatology, variables, skipped (empty
    #: when no analysis is configured).
    gridded: Mapping[str, str] = field(default_factory=dict)


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


def _grid(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> dict[str, Any]:
    def cell(v: object) -> str:
        if isinstance(v, (float, np.floating)):
            return _fmt(float(v))
        return str(v)

    return {"headers": list(headers), "rows": [[cell(v) for v in row] for row in rows]}


def _accuracy_grid(table: pd.DataFrame) -> dict[str, Any] | None:
    if table.empty:
        return None
    wide = table.pivot_table(
        index=["variable", "threshold", "lead_hours"],
        columns="system",
        values="accuracy",
        sort=False,
    )
    systems = list(dict.fromkeys(table["system"]))
    rows = [[v, f"{t:g}", int(h), *wide.loc[(v, t, h), systems]] for v, t, h in wide.index]
    return _grid(["variable", "|error| ≤", "lead [h]", *systems], rows)


def _contingency_grid(table: pd.DataFrame) -> dict[str, Any] | None:
    if table.empty:
        return None
    cols = ["ets", "pod", "far", "frequency_bias"]
    rows = [
        [
            r.system,
            r.variable,
            f"{r.threshold:g}",
            int(r.lead_hours),
            *(getattr(r, c) for c in cols),
            int(r.n),
        ]
        for r in table.itertuples()
    ]
    return _grid(
        ["system", "variable", "≥ mm", "lead [h]", "ETS", "POD", "FAR", "freq. bias", "n"], rows
    )


def _ensemble_grid(table: pd.DataFrame) -> dict[str, Any] | None:
    if table.empty:
        return None
    cols = ["crps_fair", "crps_ecdf", "spread", "ensemble_mean_rmse", "spread_skill"]
    rows = [
        [
            r.system,
            r.variable,
            int(r.lead_hours),
            int(r.members),
            *(getattr(r, c) for c in cols),
            int(r.n),
        ]
        for r in table.itertuples()
    ]
    heads = ["system", "variable", "lead [h]", "members", "CRPS (fair)", "CRPS (ecdf)"]
    return _grid([*heads, "spread", "RMSE of mean", "spread/skill", "n"], rows)


def _region_grid(table: pd.DataFrame, lead: int) -> dict[str, Any] | None:
    rows = table[(table["lead_hours"] == lead) & (table["n"] > 0)] if len(table) else table
    if rows.empty:
        return None
    reference = str(rows["reference"].iloc[0])
    systems = [s for s in dict.fromkeys(rows["system"]) if s != reference]
    wide = rows.pivot_table(
        index=["variable", "kind", "region", "n_stations"],
        columns="system",
        values="mse_skill",
        sort=False,
    )
    out = [[*key[:3], int(key[3]), *wide.loc[key, systems]] for key in wide.index]
    return _grid(["variable", "kind", "region", "stations", *[f"skill {s}" for s in systems]], out)


def _significance_grid(table: pd.DataFrame) -> dict[str, Any] | None:
    if table.empty:
        return None
    rows = [
        [
            f"{r.system} vs {r.versus}",
            r.variable,
            int(r.lead_hours),
            r.difference,
            f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]",
            r.p_bootstrap,
            r.dm_p_value,
            int(r.n_inits),
            r.note,
        ]
        for r in table.itertuples()
    ]
    heads = ["comparison", "variable", "lead [h]", "ΔRMSE (A − B)", "95% CI", "p (bootstrap)"]
    return _grid([*heads, "p (Diebold–Mariano)", "inits", "note"], rows)


def _gridded_grid(table: pd.DataFrame) -> dict[str, Any] | None:
    if table.empty:
        return None
    rows = [
        [r.variable, int(r.lead_hours), r.system, r.rmse, r.acc, int(r.n_fields)]
        for r in table.sort_values(["variable", "lead_hours"], kind="stable").itertuples()
    ]
    return _grid(["variable", "lead [h]", "system", "RMSE", "ACC", "fields"], rows)


def render_report(
    scorecard: pd.DataFrame,
    plots: Sequence[Path],
    mask: MaskSummary,
    config: Mapping[str, Any],
    path: Path,
    title: str = "stratocast verification",
    tables: Mapping[str, pd.DataFrame] | None = None,
    region_plots: Sequence[Path] = (),
    gridded_plots: Sequence[Path] = (),
) -> Path:
    """Write the HTML report to ``path``; ``tables`` are the scorecard's other tables."""
    from stratocast import __version__

    tables = tables or {}
    empty = pd.DataFrame()
    regions = tables.get("regions", empty)
    region_lead = int(config.get("map_lead_hours", 24))
    if len(regions):
        leads = regions["lead_hours"].unique()
        region_lead = int(leads[np.argmin(np.abs(leads - region_lead))])
    html = _template().render(
        title=title,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        systems=list(dict.fromkeys(scorecard["system"])),
        reference=str(scorecard["reference"].iloc[0]) if len(scorecard) else "",
        masks=_masks(scorecard),
        tables=_rmse_tables(scorecard),
        accuracy=_accuracy_grid(tables.get("accuracy", empty)),
        contingency=_contingency_grid(tables.get("contingency", empty)),
        ensemble=_ensemble_grid(tables.get("ensemble", empty)),
        region_table=_region_grid(regions, region_lead),
        region_lead=region_lead,
        region_plots=[{"name": p.name, "data": _embed(p)} for p in region_plots],
        significance=_significance_grid(tables.get("significance", empty)),
        gridded_table=_gridded_grid(tables.get("gridded", empty)),
        gridded_plots=[{"name": p.name, "data": _embed(p)} for p in gridded_plots],
        plots=[{"name": p.name, "data": _embed(p)} for p in plots],
        config_json=json.dumps(dict(config), indent=2, default=str, sort_keys=True),
        **mask.__dict__,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
