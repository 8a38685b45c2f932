"""Scorecard figures as PNG (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # Verification runs headless (batch jobs, CI); never open a window.

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

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
