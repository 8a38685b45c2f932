"""GRIB2 products: templates, keys and codes per variable, and three decoders agreeing
(our own, cfgrib, stratocast's open_gridded) to packing precision."""

from __future__ import annotations

from pathlib import Path

import cfgrib
import eccodes
import numpy as np
import pytest

from stratocast.errors import StratocastError
from stratocast.gridded import open_gridded
from stratocast.gridded.lexicon import GRIB, Target
from stratocast.infer.writers.grib2_writer import ACCUMULATION, Grib2Writer, GribParameter
from stratocast.testing.writers import assert_same_forecast, packing_tolerance, synthetic_forecast

#: a synthetic accumulated variable (the vocabulary has none yet): total precipitation
TP = GribParameter(0, 1, 52, 1, statistic=ACCUMULATION)

KEYS = (
    "shortName",
    "typeOfLevel",
    "level",
    "productDefinitionTemplateNumber",
    "typeOfProcessedData",
    "typeOfGeneratingProcess",
    "stepUnits",
    "stepType",
    "stepRange",
    "dataDate",
    "dataTime",
)


def headers(path: Path, extra: tuple[str, ...] = ()) -> list[dict[str, str]]:
    out = []
    with path.open("rb") as fh:
        while (h := eccodes.codes_grib_new_from_file(fh)) is not None:
            out.append({k: eccodes.codes_get_string(h, k) for k in (*KEYS, *extra)})
            eccodes.codes_release(h)
    return out


def test_keys_per_variable_deterministic(tmp_path: Path) -> None:
    ds = synthetic_forecast(n_init=1, n_lead=2)
    out = Grib2Writer().write(ds, tmp_path / "f.grib2")
    msgs = headers(out)
    assert len(msgs) == 6 * 2
    where = {m["shortName"]: (m["typeOfLevel"], m["level"]) for m in msgs}
    assert where == {
        "2t": ("heightAboveGround", "2"),
        "10u": ("heightAboveGround", "10"),
        "10v": ("heightAboveGround", "10"),
        "msl": ("meanSea", "0"),
        "z": ("isobaricInhPa", "500"),
        "t": ("isobaricInhPa", "850"),
    }
    for m in msgs:
        assert m["productDefinitionTemplateNumber"] == "0"
        assert m["typeOfProcessedData"] == "10"  # code table 1.4: ML based forecast
        assert m["typeOfGeneratingProcess"] == "2"  # code table 4.3: forecast
        assert m["stepUnits"] == "h" and m["stepType"] == "instant"
        assert (m["dataDate"], m["dataTime"]) == ("20240301", "0000")
    assert sorted({m["stepRange"] for m in msgs}) == ["0", "6"]


def test_ensemble_members_keep_their_numbers(tmp_path: Path) -> None:
    ds = synthetic_forecast(n_init=1, n_lead=2, members=3).assign_coords(member=[0, 5, 9])
    out = Grib2Writer().write(ds, tmp_path / "e.grib2")
    msgs = headers(out, ("perturbationNumber", "numberOfForecastsInEnsemble"))
    assert {m["productDefinitionTemplateNumber"] for m in msgs} == {"1"}
    assert {m["typeOfGeneratingProcess"] for m in msgs} == {"4"}  # ensemble forecast
    assert sorted({int(m["perturbationNumber"]) for m in msgs}) == [0, 5, 9]
    assert {m["numberOfForecastsInEnsemble"] for m in msgs} == {"3"}
    # open_gridded sees the members (one lead at a time: valid time is its time axis)
    back = open_gridded(out, step=6)
    np.testing.assert_array_equal(back["member"].values, [0, 5, 9])


@pytest.mark.parametrize(("members", "template"), [(None, "8"), (2, "11")])
def test_accumulations_use_statistical_templates(
    tmp_path: Path, members: int | None, template: str
) -> None:
    ds = synthetic_forecast(n_init=1, n_lead=3, members=members, channels=("t2m", "tp"))
    ds["tp"] = np.abs(ds["tp"]).cumsum("lead_time").assign_attrs(ds["tp"].attrs)
    writer = Grib2Writer(parameters={"tp": TP})
    out = writer.write(ds, tmp_path / "a.grib2")
    tp = [m for m in headers(out) if m["shortName"] == "tp"]
    assert {m["productDefinitionTemplateNumber"] for m in tp} == {template}
    assert [m["stepRange"] for m in tp][:3] == ["0", "0-6", "0-12"]
    assert {m["stepType"] for m in tp} == {"accum"}
    assert_same_forecast(writer.read(out), ds.drop_vars("orography"), 16)
    # open_gridded: the valid time is the end of the accumulation
    lexicon = {**GRIB, ("tp", "surface", 0): Target("tp", "kg m-2")}
    back = open_gridded(out, grib_lexicon=lexicon, step=12, variables=["tp"])
    assert back["time"].values[0] == np.datetime64("2024-03-01T12:00", "ns")


def test_cfgrib_and_open_gridded_read_identical_values(tmp_path: Path) -> None:
    ds = synthetic_forecast(n_init=1, n_lead=3)
    ds["t2m"][0, 1, 2:4, 3:6] = np.nan
    writer = Grib2Writer()
    out = writer.write(ds, tmp_path / "f.grib2")
    ours = writer.read(out)
    assert_same_forecast(ours, ds, writer.packing_bits)
    # cfgrib's variable names (cfVarName) -> ours
    names = {"t2m": "t2m", "u10": "u10", "v10": "v10", "msl": "msl", "z": "z500", "t": "t850"}
    seen = set()
    for part in cfgrib.open_datasets(str(out), backend_kwargs={"indexpath": ""}):
        for short, da in part.data_vars.items():
            name = names[str(short)]
            seen.add(name)
            # same values as our decoder, bit for bit (both unpack the same message)
            np.testing.assert_array_equal(
                da.values.astype(np.float32), ours[name].isel(init_time=0).values
            )
    assert seen == set(names.values())
    for j, lead in enumerate(ds["lead_time"].values):
        og = open_gridded(out, step=int(lead))
        for name in names.values():
            got = og[name].isel(time=0).values  # lat ascending, lon in [0, 360)
            want = ours[name].isel(init_time=0, lead_time=j)
            want = want.assign_coords(lon=np.mod(want["lon"].values, 360.0)).sortby(["lat", "lon"])
            np.testing.assert_array_equal(got.astype(np.float32), want.values, err_msg=name)
    # NaN is a bitmap hole, not a sentinel value
    with out.open("rb") as fh:
        h = eccodes.codes_grib_new_from_file(fh)
        assert h is not None
        h2 = eccodes.codes_grib_new_from_file(fh)
        assert h2 is not None
        assert eccodes.codes_get(h2, "bitmapPresent") == 1
        assert eccodes.codes_get(h2, "numberOfMissing") == 6
        assert eccodes.codes_get(h, "bitmapPresent") == 0
        eccodes.codes_release(h)
        eccodes.codes_release(h2)


def test_packing_precision_is_what_the_suite_allows(tmp_path: Path) -> None:
    """The tolerance the suite allows is tight: 8-bit packing breaks the 16-bit allowance."""
    ds = synthetic_forecast(n_init=1, n_lead=1, channels=("t2m",))
    coarse = Grib2Writer(bits_per_value=8)
    out = coarse.write(ds, tmp_path / "c.grib2")
    err = np.abs(coarse.read(out)["t2m"].values - ds["t2m"].values)
    assert (err <= packing_tolerance(ds["t2m"].values.astype(np.float64), 8)).all()
    assert (err > packing_tolerance(ds["t2m"].values.astype(np.float64), 16)).any()


def test_unmappable_variable_is_named(tmp_path: Path) -> None:
    ds = synthetic_forecast(n_init=1, n_lead=1, channels=("t2m",))
    ds["hirs_bt07"] = ds["t2m"].copy()
    target = tmp_path / "f.grib2"
    with pytest.raises(StratocastError, match=r"hirs_bt07.*no GRIB2 parameter") as err:
        Grib2Writer().write(ds, target)
    assert str(target) in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_irregular_grid_and_all_nan_refused(tmp_path: Path) -> None:
    ds = synthetic_forecast(n_init=1, n_lead=1, lon=[0.0, 1.0, 3.0, 4.0], channels=("t2m",))
    with pytest.raises(StratocastError, match="evenly spaced"):
        Grib2Writer().write(ds, tmp_path / "f.grib2")
    ds = synthetic_forecast(n_init=1, n_lead=1, channels=("t2m",))
    ds["t2m"][:] = np.nan
    with pytest.raises(StratocastError, match=r"'t2m'.*all NaN"):
        Grib2Writer().write(ds, tmp_path / "f.grib2")


def test_relative_humidity_in_percent(tmp_path: Path) -> None:
    ds = synthetic_forecast(n_init=1, n_lead=1, channels=("r850",))
    ds["r850"] = (ds["r850"] * 0 + 0.5).assign_attrs(units="1", standard_name="relative_humidity")
    writer = Grib2Writer()
    out = writer.write(ds, tmp_path / "r.grib2")
    with out.open("rb") as fh:
        h = eccodes.codes_grib_new_from_file(fh)
        assert h is not None
        assert eccodes.codes_get_string(h, "shortName") == "r"
        assert float(eccodes.codes_get_values(h).max()) == pytest.approx(50.0)
        eccodes.codes_release(h)
    np.testing.assert_allclose(writer.read(out)["r850"].values, ds["r850"].values, rtol=1e-6)
