"""Pressure-level fields, skipped-field reports, user lexicons and dataType/step selection.

References are independent of the reader: GRIB values are ecCodes' own (lat, lon, value)
triples (``codes_grib_get_data``) converted to SI here by hand (gpm × g0, % ÷ 100); the GRIB
files for the selection cases are real ERA5/GFS messages re-encoded with ecCodes (a forecast
copy of an analysis, two forecasts valid at one time), and the NetCDF/Zarr stores are built
here from GFS messages read with ecCodes, in the ERA5-CDS, ARCO-ERA5, WeatherBench2 and CMIP
layouts (names, dimension order, latitude direction, level units).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import eccodes
import numpy as np
import pytest
import xarray as xr

from stratocast.gridded import (
    GriddedFileError,
    LexiconError,
    Target,
    open_gridded,
    skipped_fields,
)

DATA = Path("/work/shared/data")
GRIB = DATA / "grib"
ERA5 = GRIB / "era5-levels-members.grib"
GFS = GRIB / "gfs.t12z.pgrbf120.2p5deg.grib2"
G0 = 9.80665
needs_grib = pytest.mark.skipif(not GRIB.is_dir(), reason="shared GRIB data absent")

# GRIB shortName on isobaricInhPa → (quantity, native→SI factor), written out by hand
QUANTITY = {
    "t": ("t", 1.0),
    "z": ("z", 1.0),
    "gh": ("z", G0),
    "u": ("u", 1.0),
    "v": ("v", 1.0),
    "q": ("q", 1.0),
    "r": ("r", 0.01),
    "w": ("w", 1.0),
}
# spelled by hand (not through level_variable): u/v at 10 hPa are u10hpa/v10hpa, because
# u10/v10 are the 10 m wind
CLASH_NAMES = {"u10": "u10hpa", "v10": "v10hpa"}


def _messages(path: Path) -> Iterator[dict[str, Any]]:
    """Header keys and the encoded bytes of each message (points: :func:`_points`)."""
    with path.open("rb") as fh:
        while (h := eccodes.codes_grib_new_from_file(fh)) is not None:
            try:
                yield {
                    "short": eccodes.codes_get_string(h, "shortName"),
                    "type": eccodes.codes_get_string(h, "typeOfLevel"),
                    "level": int(eccodes.codes_get(h, "level")),
                    "number": eccodes.codes_get(h, "number", int)
                    if eccodes.codes_is_defined(h, "number")
                    else None,
                    "date": eccodes.codes_get(h, "validityDate"),
                    "time": eccodes.codes_get(h, "validityTime"),
                    "bytes": bytes(eccodes.codes_get_message(h)),
                }
            finally:
                eccodes.codes_release(h)


def _points(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ecCodes' geometry iterator: (lat, lon, value) of every point of one message."""
    h = eccodes.codes_new_from_message(data)
    try:
        return (
            np.asarray(eccodes.codes_get_double_array(h, "latitudes")),
            np.asarray(eccodes.codes_get_double_array(h, "longitudes")),
            np.asarray(eccodes.codes_get_values(h)),
        )
    finally:
        eccodes.codes_release(h)


def _valid(msg: dict[str, Any]) -> np.datetime64:
    d, t = msg["date"], msg["time"]
    return np.datetime64(
        f"{d // 10000:04d}-{d // 100 % 100:02d}-{d % 100:02d}T{t // 100:02d}:{t % 100:02d}", "ns"
    )


def _canonical(msg: dict[str, Any]) -> str | None:
    if msg["type"] != "isobaricInhPa" or msg["short"] not in QUANTITY:
        return None
    name = f"{QUANTITY[msg['short']][0]}{msg['level']}"
    return CLASH_NAMES.get(name, name)


def _field_at_points(ds: xr.Dataset, name: str, msg: dict[str, Any]) -> np.ndarray:
    field = ds[name].sel(time=_valid(msg))
    if "member" in field.dims:
        field = field.sel(member=msg["number"])
    lat, lon, _ = _points(msg["bytes"])
    picked = field.sel(lat=xr.DataArray(lat, dims="p"), lon=xr.DataArray(lon % 360.0, dims="p"))
    return np.asarray(picked.values)


def _expected(msg: dict[str, Any]) -> np.ndarray:
    factor = QUANTITY[msg["short"]][1]
    return _points(msg["bytes"])[2] * factor


@pytest.fixture(scope="module")
def gfs() -> xr.Dataset:
    if not GFS.exists():
        pytest.skip("shared GFS GRIB absent")
    return open_gridded(GFS)


# ---------------------------------------------------------------------------- GRIB levels


@needs_grib
@pytest.mark.parametrize("name", [ERA5.name, GFS.name])
def test_every_pressure_level_field_of_a_grib_file(name: str) -> None:
    ds = open_gridded(GRIB / name)
    taken = 0
    for msg in _messages(GRIB / name):
        canonical = _canonical(msg)
        if canonical is None:
            continue
        np.testing.assert_allclose(
            _field_at_points(ds, canonical, msg), _expected(msg), rtol=1e-12, err_msg=canonical
        )
        assert ds[canonical].attrs["units"] in ("K", "m2 s-2", "m s-1", "1", "Pa s-1")
        taken += 1
    assert taken > 0
    # relative humidity in 1, not %: GFS r at 850 hPa has values up to 100 % → at most ~1
    if "r850" in ds:
        assert 0.9 < float(ds["r850"].max()) <= 1.0 + 1e-9


@needs_grib
def test_gfs_every_field_not_taken_is_listed_with_a_reason(gfs: xr.Dataset) -> None:
    lines = skipped_fields(gfs)
    listed = {line.split(": ", 1)[0] for line in lines}
    messages = list(_messages(GFS))
    for msg in messages:
        label = f"{msg['short']}@{msg['type']}:{msg['level']}"
        canonical = _canonical(msg)
        taken = canonical is not None
        if (
            not taken
            and canonical is None
            and (msg["short"], msg["type"])
            in {
                ("2t", "heightAboveGround"),
                ("10u", "heightAboveGround"),
                ("10v", "heightAboveGround"),
                ("prmsl", "meanSea"),
                ("sp", "surface"),
                ("orog", "surface"),
            }
        ):
            continue  # single-level canonical fields (test_gridded.py checks their values)
        assert (label in listed) != taken, label
    # u at 10 hPa is its own variable, never the 10 m wind
    assert "u10hpa" in gfs and not any(line.startswith("u@isobaricInhPa:10:") for line in lines)
    assert not np.allclose(gfs["u10hpa"].values, gfs["u10"].values)


@needs_grib
def test_temperature_on_three_levels_opens(tmp_path: Path) -> None:
    """A file of temperature at 1000/500/100 hPa once opened as an empty Dataset."""
    path = tmp_path / "t3.grib2"
    picked = [
        m
        for m in _messages(GFS)
        if m["short"] == "t" and m["type"] == "isobaricInhPa" and m["level"] in (1000, 500, 100)
    ]
    path.write_bytes(b"".join(m["bytes"] for m in picked))
    ds = open_gridded(path)
    assert set(ds.data_vars) == {"t1000", "t500", "t100"}
    assert skipped_fields(ds) == []
    for msg in picked:
        np.testing.assert_allclose(
            _field_at_points(ds, f"t{msg['level']}", msg), _expected(msg), rtol=1e-12
        )


@needs_grib
def test_a_file_with_nothing_canonical_is_an_error_listing_each_field(tmp_path: Path) -> None:
    path = tmp_path / "none.grib2"
    picked = [m for m in _messages(GFS) if m["short"] in ("absv", "5wavh", "tozne")]
    path.write_bytes(b"".join(m["bytes"] for m in picked))
    with pytest.raises(GriddedFileError) as err:
        open_gridded(path)
    text = str(err.value)
    assert str(path) in text
    for msg in picked:
        label = f"{msg['short']}@{msg['type']}:{msg['level']}"
        assert re.search(re.escape(label) + r": no lexicon entry .*\(message \d+", text), label


# ---------------------------------------------------------------------------- user lexicon


@needs_grib
def test_user_lexicon_t500_in_kelvin() -> None:
    lex = {("t", "isobaricInhPa", 500): Target("t500", "K")}
    ds = open_gridded(ERA5, grib_lexicon=lex)
    assert set(ds.data_vars) == {"t500"}
    for msg in _messages(ERA5):
        if msg["short"] == "t" and msg["level"] == 500:
            np.testing.assert_allclose(_field_at_points(ds, "t500", msg), _expected(msg))
    # the rest of the file is listed, not silently gone
    listed = skipped_fields(ds)
    assert any(line.startswith("z@isobaricInhPa:850: no lexicon entry") for line in listed)


@pytest.mark.parametrize(
    ("units", "message"),
    [("blorp", "unknown unit"), ("m s-1", "different dimensions")],
)
def test_user_lexicon_units_are_validated_by_pint(units: str, message: str) -> None:
    lex = {("t", "isobaricInhPa", 500): Target("t500", units)}
    with pytest.raises(LexiconError, match=rf"\('t', 'isobaricInhPa', 500\).*{message}"):
        open_gridded(ERA5, grib_lexicon=lex)


def test_user_lexicon_level_must_match_target() -> None:
    lex = {("t", "isobaricInhPa", 850): Target("t500", "K")}
    with pytest.raises(LexiconError, match=r"t500.*500 hPa but the key says 850"):
        open_gridded(ERA5, grib_lexicon=lex)


@needs_grib
def test_user_array_lexicon_default_units_in_celsius(tmp_path: Path) -> None:
    """A store without a units attribute: the lexicon's units apply, converted by Pint."""
    msg = next(m for m in _messages(GFS) if m["short"] == "t" and m["level"] == 500)
    lats, lons, values = _points(msg["bytes"])
    nj = np.unique(lats).size  # GFS scans west→east, rows north→south
    lat, lon = lats.reshape(nj, -1)[:, 0], lons.reshape(nj, -1)[0]
    kelvin = values.reshape(nj, -1)
    store = xr.Dataset(
        {"tc": (("time", "lat", "lon"), kelvin[None] - 273.15)},
        coords={"time": [_valid(msg)], "lat": lat, "lon": lon},
    )
    store.to_zarr(tmp_path / "c.zarr", consolidated=False)
    ds = open_gridded(tmp_path / "c.zarr", array_lexicon={("tc", None): Target("t500", "degC")})
    np.testing.assert_allclose(_field_at_points(ds, "t500", msg), _expected(msg), rtol=1e-12)


# ---------------------------------------------------------------------------- selection


def _recode(msg_bytes: bytes, **keys: Any) -> bytes:
    """``msg_bytes`` re-encoded by ecCodes with ``keys`` set (values: ``delta`` added)."""
    h = eccodes.codes_new_from_message(msg_bytes)
    try:
        delta = keys.pop("delta", 0.0)
        for key, value in keys.items():
            if isinstance(value, str):
                eccodes.codes_set_string(h, key, value)
            else:
                eccodes.codes_set(h, key, value)
        if delta:
            eccodes.codes_set_values(h, eccodes.codes_get_values(h) + delta)
        return bytes(eccodes.codes_get_message(h))
    finally:
        eccodes.codes_release(h)


@pytest.fixture(scope="module")
def analysis() -> dict[str, Any]:
    if not ERA5.exists():
        pytest.skip("shared ERA5 GRIB absent")
    # t500, member 0, valid 2017-01-01 12 UTC: an analysis (step 0)
    return next(
        m
        for m in _messages(ERA5)
        if m["short"] == "t" and m["level"] == 500 and m["number"] == 0 and m["time"] == 1200
    )


def _decoded(data: bytes) -> dict[str, Any]:
    h = eccodes.codes_new_from_message(data)
    try:
        date, time = eccodes.codes_get(h, "validityDate"), eccodes.codes_get(h, "validityTime")
    finally:
        eccodes.codes_release(h)
    return {"bytes": data, "date": date, "time": time, "number": 0, "short": "t"}


def test_analysis_and_forecast_are_selected_by_data_type(
    tmp_path: Path, analysis: dict[str, Any]
) -> None:
    an = analysis["bytes"]
    # a 12 h forecast from 00 UTC valid at the analysis time, with different values
    fc = _recode(an, dataType="fc", dataDate=20170101, dataTime=0, step=12, delta=1.5)
    path = tmp_path / "an_fc.grib"
    path.write_bytes(an + fc)
    with pytest.raises(GriddedFileError, match=r"data_type='an'\) or data_type='fc'"):
        open_gridded(path)
    for data_type, data in (("an", an), ("fc", fc)):
        ds = open_gridded(path, data_type=data_type)
        ref = _decoded(data)
        assert ref["date"] == analysis["date"] and ref["time"] == analysis["time"]
        np.testing.assert_allclose(_field_at_points(ds, "t500", ref), _expected(ref))
        other = "fc" if data_type == "an" else "an"
        assert any(f"dataType {other!r} not selected" in line for line in skipped_fields(ds)), (
            skipped_fields(ds)
        )


def test_two_forecasts_for_one_valid_time_are_selected_by_step(
    tmp_path: Path, analysis: dict[str, Any]
) -> None:
    an = analysis["bytes"]
    f12 = _recode(an, dataType="fc", dataDate=20170101, dataTime=0, step=12, delta=1.5)
    f24 = _recode(an, dataType="fc", dataDate=20161231, dataTime=1200, step=24, delta=-2.5)
    path = tmp_path / "steps.grib"
    path.write_bytes(f12 + f24)
    with pytest.raises(GriddedFileError, match=r"step=\.\.\.\).*step=12 or step=24\)"):
        open_gridded(path)
    for step, data in ((12, f12), (timedelta(hours=24), f24), (np.timedelta64(24, "h"), f24)):
        ds = open_gridded(path, step=step)
        ref = _decoded(data)
        np.testing.assert_allclose(_field_at_points(ds, "t500", ref), _expected(ref))
    assert not any("identical" in line for line in skipped_fields(ds))


def test_repeated_message_is_skipped_and_conflicting_one_is_an_error(
    tmp_path: Path, analysis: dict[str, Any]
) -> None:
    an = analysis["bytes"]
    path = tmp_path / "repeat.grib"
    path.write_bytes(an + an)
    ds = open_gridded(path)
    assert any("identical repeat of message 1" in line for line in skipped_fields(ds))
    changed = _recode(an, delta=0.5)
    path.write_bytes(an + changed)
    with pytest.raises(GriddedFileError, match=r"message 2 .* duplicates t500 .*split the file"):
        open_gridded(path)


def test_step_of_a_forecast_store(tmp_path: Path) -> None:
    init = np.array(["2020-01-01T00"], dtype="datetime64[ns]")
    leads = np.array([6, 12], dtype="timedelta64[h]").astype("timedelta64[ns]")
    values = np.stack([np.full((2, 2), 280.0), np.full((2, 2), 281.0)])[None]
    store = xr.Dataset(
        {
            "temperature": (
                ("time", "prediction_timedelta", "level", "latitude", "longitude"),
                values[:, :, None],
                {"units": "K"},
            )
        },
        coords={
            "time": init,
            "prediction_timedelta": leads,
            "level": [850],
            "latitude": [0.0, 1.0],
            "longitude": [0.0, 1.0],
        },
    )
    store.to_zarr(tmp_path / "fc.zarr", consolidated=False)
    with pytest.raises(GriddedFileError, match=r"2 lead times .*6h, 12h.*step=\.\.\."):
        open_gridded(tmp_path / "fc.zarr")
    ds = open_gridded(tmp_path / "fc.zarr", step=12)
    assert ds["time"].values[0] == np.datetime64("2020-01-01T12:00", "ns")
    assert float(ds["t850"].max()) == 281.0
    with pytest.raises(GriddedFileError, match=r"no step 3h .*has 6h, 12h"):
        open_gridded(tmp_path / "fc.zarr", step=3)


# ---------------------------------------------------------------------------- variables=


@needs_grib
def test_variables_selects_and_a_missing_one_is_named() -> None:
    ds = open_gridded(GFS, variables=["t850", "z500", "r700"])
    assert set(ds.data_vars) == {"t850", "z500", "r700"}
    for msg in _messages(GFS):
        if _canonical(msg) in ("z500", "r700"):
            np.testing.assert_allclose(
                _field_at_points(ds, str(_canonical(msg)), msg), _expected(msg), rtol=1e-12
            )
    assert any(line.startswith("t500: not requested") for line in skipped_fields(ds))
    with pytest.raises(GriddedFileError, match=r"requested variable\(s\) q500 not in .* t500"):
        open_gridded(GFS, variables=["t500", "q500"])


def test_built_in_lexicons_convert_by_pint() -> None:
    from stratocast.gridded import lexicon

    lexicon.validate(lexicon.GRIB)  # raises LexiconError naming a bad entry
    lexicon.validate(lexicon.ARRAY_NAMES)
    # the factors that matter, against the hand values: gpm and CMIP zg (m) × g0, % ÷ 100
    assert lexicon.si_converter("z500", "gpm").factor == G0
    assert lexicon.si_converter("z500", "m").factor == G0
    assert lexicon.si_converter("r850", "%").factor == pytest.approx(0.01, rel=1e-15)
    assert lexicon.si_converter("orography", "m**2 s**-2").factor == pytest.approx(1 / G0)
    assert lexicon.si_converter("msl", "mb").factor == 100.0  # millibar, not Pint's millibarn
    assert lexicon.si_converter("t2m", "C").offset == 273.15  # Celsius, not coulomb
