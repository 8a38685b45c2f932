"""A product's published cycles as one forecast dataset: what verification scores.

Fallback publications are left out (they re-label an older forecast; scoring them would
credit the product with a forecast it did not make) and counted.
"""

from __future__ import annotations

import json
from pathlib import Path

import xarray as xr

from stratocast.infer.products import ProductError
from stratocast.infer.publish import COMPLETE
from stratocast.infer.writers.zarr_writer import write_zarr


def assemble(products: Path, name: str, out: Path) -> tuple[Path, int, int]:
    """Concatenate the complete, non-fallback cycles of ``name`` along init_time into the
    Zarr ``out``; returns (out, cycles used, fallbacks left out)."""
    base = products / name
    cycles = (
        sorted(p for p in base.glob("[0-9]*") if (p / COMPLETE).is_file()) if base.is_dir() else []
    )
    used, fallbacks = [], 0
    for p in cycles:
        if json.loads((p / COMPLETE).read_text()).get("fallback"):
            fallbacks += 1
        else:
            used.append(xr.open_zarr(p / "forecast.zarr", consolidated=False))
    if not used:
        raise ProductError(
            f"no published cycles of product {name} under {base} to assemble "
            f"({fallbacks} fallbacks left out)"
        )
    leads = {tuple(d["lead_time"].values) for d in used}
    if len(leads) > 1:
        raise ProductError(f"product {name}'s cycles under {base} have different lead times")
    static = used[0]["orography"]
    ds = xr.concat([d.drop_vars("orography") for d in used], dim="init_time")
    ds["orography"] = static
    return write_zarr(ds.chunk({"init_time": 1}), out), len(used), fallbacks
