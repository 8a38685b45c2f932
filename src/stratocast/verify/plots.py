"""Scorecard figures as PNG (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # Verification runs headless (batch jobs, CI); never open a window.

import geopandas as gp
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from stratocast.verify.config import EXTRA_UNITS
from stratocast.vocab.variables import VARIABLES


def _units(variable: str) -> str:
    var = VARIABLES.get(variable)
    return var.units if var is not None else EXTRA_UNITS.get(variable, "")


def plot_rmse_vs_lead(scorecard: pd.DataFrame, variable: str, path: Path) -> Path:
    """RMSE against lead time for one variable, one line per system."""
    rows = scorecard[scorecard["variable"] == variable]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    try:
        for system in dict.fromkeys(rows["system"]):
            sub = rows[rows["system"] == system].sort_values("lead_hours")
            ax.plot(sub["lead_hours"], sub["rmse"], marker="o", ms=3, label=str(system))
        n = int(rows["n"].max()) if len(rows) else 0
        ax.set_title(f"{variable}: RMSE vs lead time (up to {n} samples per lead)")
        ax.set_xlabel("lead time [h]")
        ax.set_ylabel(f"RMSE [{_units(variable)}]")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def plot_station_skill_map(station_scores: pd.DataFrame, variable: str, path: Path) -> Path:
    """Stations coloured by MSE skill vs the reference, one panel per non-reference system.

    ``station_scores`` has columns system, variable, lead_hours, lat, lon, mse_skill, reference.
    """
    rows = station_scores[station_scores["variable"] == variable]
    reference = str(rows["reference"].iloc[0]) if len(rows) else ""
    systems = [s for s in dict.fromkeys(rows["system"]) if s != reference]
    fig, axes = plt.subplots(
        1,
        max(len(systems), 1),
        figsize=(4.2 * max(len(systems), 1), 3.6),
        dpi=100,
        squeeze=False,
        layout="constrained",
    )
    try:
        scatter = None
        for ax, system in zip(axes[0], systems, strict=False):
            sub = rows[rows["system"] == system]
            skill = sub["mse_skill"].to_numpy(dtype=np.float64)
            lat = sub["lat"].to_numpy(dtype=np.float64)
            # Plot around the Greenwich meridian: most station networks read better that way.
            lon = np.mod(sub["lon"].to_numpy(dtype=np.float64) + 180.0, 360.0) - 180.0
            ok = np.isfinite(skill)
            ax.scatter(lon[~ok], lat[~ok], c="lightgrey", s=12, marker="x", label="no data")
            scatter = ax.scatter(
                lon[ok],
                lat[ok],
                c=skill[ok],
                cmap="RdBu",
                vmin=-1,
                vmax=1,
                s=28,
                edgecolors="k",
                linewidths=0.3,
            )
            ax.set_title(f"{system}", fontsize=9)
            ax.set_xlabel("lon [°E]")
            ax.set_ylabel("lat [°N]")
            ax.grid(alpha=0.3)
        lead = int(rows["lead_hours"].iloc[0]) if len(rows) else 0
        fig.suptitle(f"{variable}: MSE skill vs {reference} at +{lead} h", fontsize=10)
        if scatter is not None:
            fig.colorbar(
                scatter, ax=axes[0].tolist(), shrink=0.85, label="1 − MSE/MSE_ref", extend="both"
            )
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def plot_region_skill(
    regions: pd.DataFrame,
    outlines: gp.GeoDataFrame,
    station_scores: pd.DataFrame,
    variable: str,
    lead_hours: int,
    path: Path,
) -> Path:
    """Skill by region at one lead: a map and a bar chart.

    Map: the first model's MSE skill vs the reference per region (AR6 land regions filled,
    custom polygons drawn on top with a thick outline; grey: no station), stations as dots.
    Bars: every region with a station (continents, custom, AR6), one bar per model.
    """
    rows = regions[(regions["variable"] == variable) & (regions["lead_hours"] == lead_hours)]
    reference = str(rows["reference"].iloc[0]) if len(rows) else ""
    systems = [s for s in dict.fromkeys(rows["system"]) if s != reference]
    rows = rows[rows["n"] > 0]
    labels = list(dict.fromkeys(zip(rows["kind"], rows["region"], strict=True)))
    n_bars = max(len(labels), 1)
    fig = plt.figure(figsize=(9.0, 4.4 + 0.22 * n_bars), dpi=100, layout="constrained")
    grid = fig.add_gridspec(2, 1, height_ratios=[4.4, 0.22 * n_bars + 0.8])
    ax_map, ax_bar = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
    cmap, norm = plt.get_cmap("RdBu"), Normalize(vmin=-1.0, vmax=1.0)
    try:
        first = rows[rows["system"] == systems[0]] if systems else rows.iloc[0:0]
        skill = {
            (k, r): v
            for k, r, v in zip(first["kind"], first["region"], first["mse_skill"], strict=True)
        }
        for kind in ("ar6", "custom"):
            shapes = outlines[outlines["kind"] == kind]
            if shapes.empty:
                continue
            values = np.array([skill.get((kind, r), np.nan) for r in shapes["region"]])
            colours = [cmap(norm(v)) if np.isfinite(v) else (0.9, 0.9, 0.9, 1.0) for v in values]
            if kind == "ar6":
                shapes.plot(ax=ax_map, color=colours, edgecolor="k", linewidth=0.4)
                continue
            # Custom polygons may cover AR6 regions: an outline in the skill colour, labelled.
            shapes.boundary.plot(ax=ax_map, color=colours, linewidth=2.5, linestyle="--")
            for name, geom in zip(shapes["region"], shapes.geometry, strict=True):
                x, y = geom.representative_point().coords[0]
                ax_map.annotate(str(name), (x, y), fontsize=7, ha="center", weight="bold")
        st = station_scores.drop_duplicates("station_id")
        lon = np.mod(st["lon"].to_numpy(dtype=np.float64) + 180.0, 360.0) - 180.0
        ax_map.scatter(lon, st["lat"].to_numpy(dtype=np.float64), s=6, c="k", zorder=3)
        ax_map.set_xlim(-180, 180)
        ax_map.set_ylim(-90, 90)
        ax_map.set_xlabel("lon [°E]")
        ax_map.set_ylabel("lat [°N]")
        who = systems[0] if systems else "—"
        ax_map.set_title(
            f"{variable}: MSE skill of {who} vs {reference} at +{lead_hours} h", fontsize=10
        )
        fig.colorbar(
            ScalarMappable(norm=norm, cmap=cmap), ax=ax_map, label="1 − MSE/MSE_ref", extend="both"
        )
        y = np.arange(len(labels))
        height = 0.8 / max(len(systems), 1)
        for k, system in enumerate(systems):
            sub = rows[rows["system"] == system].set_index(["kind", "region"])
            vals = np.array([float(sub["mse_skill"].get(lab, np.nan)) for lab in labels])
            ax_bar.barh(y + k * height, np.nan_to_num(vals), height=height, label=system)
        ax_bar.set_yticks(y + 0.4 - height / 2, [f"{k}: {r}" for k, r in labels], fontsize=7)
        ax_bar.invert_yaxis()
        ax_bar.axvline(0.0, color="k", linewidth=0.6)
        ax_bar.set_xlabel(f"MSE skill vs {reference} (1 − MSE/MSE_ref)")
        ax_bar.grid(alpha=0.3, axis="x")
        if systems:
            ax_bar.legend(fontsize=8)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def plot_gridded_vs_lead(table: pd.DataFrame, variable: str, path: Path) -> Path:
    """Gridded RMSE and ACC against lead time for one variable, one line per system."""
    rows = table[table["variable"] == variable]
    fig, (ax_rmse, ax_acc) = plt.subplots(1, 2, figsize=(10.0, 4.0), dpi=100, layout="constrained")
    try:
        for system in dict.fromkeys(rows["system"]):
            sub = rows[rows["system"] == system].sort_values("lead_hours")
            ax_rmse.plot(sub["lead_hours"], sub["rmse"], marker="o", ms=3, label=str(system))
            ax_acc.plot(sub["lead_hours"], sub["acc"], marker="o", ms=3, label=str(system))
        ax_rmse.set_ylabel(f"latitude-weighted RMSE [{_units(variable)}]")
        ax_acc.set_ylabel("anomaly correlation (ACC)")
        for ax in (ax_rmse, ax_acc):
            ax.set_xlabel("lead time [h]")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"{variable}: gridded scores against the analysis", fontsize=10)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
