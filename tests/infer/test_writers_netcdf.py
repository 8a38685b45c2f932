"""CF-NetCDF4 products pass the IOOS compliance checker's CF-1.8 suite and carry the CF
forecast coordinates."""

from __future__ import annotations

import json
from pathlib import Path

import netCDF4
import numpy as np
import pytest
from compliance_checker.runner import CheckSuite, ComplianceChecker

from stratocast.infer.writers.netcdf_writer import NetcdfWriter
from stratocast.testing.writers import synthetic_forecast


def cf_check(path: Path, tmp: Path) -> dict[str, object]:
    CheckSuite.load_all_available_checkers()
    report = tmp / "cf.json"
    passed, errors = ComplianceChecker.run_checker(
        str(path), ["cf:1.8"], 0, "normal", output_filename=str(report), output_format="json"
    )
    result: dict[str, object] = json.loads(report.read_text())["cf:1.8"]
    assert not errors, result
    return {"passed": passed, **result}


@pytest.mark.parametrize("members", [None, 3])
def test_cf_checker_passes(tmp_path: Path, members: int | None) -> None:
    out = NetcdfWriter().write(synthetic_forecast(members=members), tmp_path / "f.nc")
    result = cf_check(out, tmp_path)
    high = result["high_priorities"]
    assert isinstance(high, list)
    failed = [r for r in high if r["value"][0] < r["value"][1]]
    assert not failed, failed
    assert result["passed"], result


def test_cf_checker_catches_a_broken_file(tmp_path: Path) -> None:
    """The check can fail: a standard name that is not in the CF table is reported."""
    out = NetcdfWriter().write(synthetic_forecast(), tmp_path / "f.nc")
    with netCDF4.Dataset(out, "a") as nc:
        nc.variables["t2m"].standard_name = "air_temperature_of_nonsense"
    result = cf_check(out, tmp_path)
    assert not result["passed"]


def test_cf_forecast_coordinates(tmp_path: Path) -> None:
    ds = synthetic_forecast(members=2)
    out = NetcdfWriter().write(ds, tmp_path / "f.nc")
    with netCDF4.Dataset(out) as nc:
        assert nc.Conventions == "CF-1.8"
        assert nc.variables["forecast_reference_time"].standard_name == "forecast_reference_time"
        assert nc.variables["forecast_period"].standard_name == "forecast_period"
        assert nc.variables["forecast_period"].units == "hours"
        assert nc.variables["realization"].standard_name == "realization"
        assert nc.variables["time"].dimensions == ("forecast_period", "forecast_reference_time")
        t2m = nc.variables["t2m"]
        assert t2m.dimensions == (
            "realization",
            "forecast_period",
            "forecast_reference_time",
            "lat",
            "lon",
        )
        assert "time" in t2m.coordinates
        assert t2m.chunking() == [1, 1, 1, 11, 16]
        assert t2m.filters()["zlib"] is True
        valid = netCDF4.num2date(nc.variables["time"][2, 1], nc.variables["time"].units)
        assert str(valid) == "2024-03-02 00:00:00"  # second init (12 UTC) + 12 h
    np.testing.assert_array_equal(ds["t2m"].values, NetcdfWriter().read(out)["t2m"].values)
