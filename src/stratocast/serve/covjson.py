"""CoverageJSON (and CSV / NetCDF) encodings of query answers.

Documents are built as plain dicts and validated by ``covjson-pydantic`` before they leave, so
what a client receives is a valid CoverageJSON Coverage.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from covjson_pydantic.coverage import Coverage


def _times(init: np.datetime64, leads: list[int]) -> list[str]:
    base = pd.Timestamp(init)
    return [(base + pd.Timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ") for h in leads]


def _values(a: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(x) else float(x) for x in np.asarray(a, dtype=float).ravel()]


def _parameter(name: str, units: str) -> dict[str, object]:
    return {
        "type": "Parameter",
        "observedProperty": {"label": {"en": name}},
        "unit": {"symbol": units or "1"},
    }


def point_coverage(
    ds: xr.Dataset, lon: float, lat: float, leads: list[int], vals: dict[str, np.ndarray]
) -> dict[str, object]:
    times = _times(ds["init_time"].values[0], leads)
    # CoverageJSON has no member axis: an ensemble's members are parameters name_m<k>
    flat: dict[str, np.ndarray] = {}
    units: dict[str, str] = {}
    for name, v in vals.items():
        u = str(ds[name].attrs.get("units", ""))
        for k, row in enumerate(v.reshape(-1, v.shape[-1])):
            key = name if v.ndim == 1 else f"{name}_m{k}"
            flat[key], units[key] = row, u
    ranges = {
        n: {
            "type": "NdArray",
            "dataType": "float",
            "axisNames": ["t"],
            "shape": [len(times)],
            "values": _values(v),
        }
        for n, v in flat.items()
    }
    doc: dict[str, object] = {
        "type": "Coverage",
        "domain": {
            "type": "Domain",
            "domainType": "PointSeries",
            "axes": {"x": {"values": [lon]}, "y": {"values": [lat]}, "t": {"values": times}},
            "referencing": [
                {
                    "coordinates": ["x", "y"],
                    "system": {
                        "type": "GeographicCRS",
                        "id": "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
                    },
                }
            ],
        },
        "parameters": {n: _parameter(n, units[n]) for n in flat},
        "ranges": ranges,
    }
    return Coverage.model_validate(doc).model_dump(mode="json", exclude_none=True)


def grid_coverage(sub: xr.Dataset) -> dict[str, object]:
    leads = [int(x) for x in np.asarray(sub["lead_time"].values)]
    times = _times(sub["init_time"].values[0], leads)
    names = [str(v) for v in sub.data_vars]
    order = ["lead_time", "lat", "lon"]
    ranges = {}
    units = {}
    for n in names:
        da = sub[n].isel(init_time=0) if "init_time" in sub[n].dims else sub[n]
        # CoverageJSON has no member axis: members become parameters name_m<k>
        parts = (
            [(f"{n}_m{int(k)}", da.sel(member=k)) for k in da["member"].values]
            if "member" in da.dims
            else [(n, da)]
        )
        for key, part in parts:
            part = part.transpose(*order)
            units[key] = str(sub[n].attrs.get("units", ""))
            ranges[key] = {
                "type": "NdArray",
                "dataType": "float",
                "axisNames": ["t", "y", "x"],
                "shape": list(part.shape),
                "values": _values(part.values),
            }
    axes: dict[str, object] = {
        "x": {"values": [float(x) for x in sub["lon"].values]},
        "y": {"values": [float(y) for y in sub["lat"].values]},
        "t": {"values": times},
    }
    doc: dict[str, object] = {
        "type": "Coverage",
        "domain": {
            "type": "Domain",
            "axes": axes,
            "referencing": [
                {
                    "coordinates": ["x", "y"],
                    "system": {
                        "type": "GeographicCRS",
                        "id": "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
                    },
                }
            ],
        },
        "parameters": {n: _parameter(n, u) for n, u in units.items()},
        "ranges": ranges,
    }
    doc["domain"]["domainType"] = "Grid"  # type: ignore[index]
    return Coverage.model_validate(doc).model_dump(mode="json", exclude_none=True)


def point_csv(
    ds: xr.Dataset, lon: float, lat: float, leads: list[int], vals: dict[str, np.ndarray]
) -> str:
    times = _times(ds["init_time"].values[0], leads)
    frame = pd.DataFrame({"lon": lon, "lat": lat, "lead_time": leads, "valid_time": times})
    for n, v in vals.items():
        if v.ndim == 1:
            frame[n] = v
        else:
            for k in range(v.shape[0]):
                frame[f"{n}_m{k}"] = v[k]
    return frame.to_csv(index=False)


def grid_csv(sub: xr.Dataset) -> str:
    frame = sub.drop_vars([c for c in sub.coords if c not in sub.dims]).to_dataframe()
    buf = io.StringIO()
    frame.reset_index().to_csv(buf, index=False)
    return buf.getvalue()


def grid_netcdf(sub: xr.Dataset) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "subset.nc"
        sub.to_netcdf(path)
        return path.read_bytes()
