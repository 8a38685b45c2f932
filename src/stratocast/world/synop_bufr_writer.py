"""WMO SYNOP BUFR (edition 4) with ecCodes, one file per synoptic time.

Template 307080 ("synoptic reports from fixed land stations suitable for SYNOP data"), the
standard land-SYNOP sequence ecCodes ships. All stations of one time go into a single
multi-subset *compressed* message: encoding one message of ~250 subsets takes ~15 ms,
versus ~250 separate messages at several ms each.

Keys follow WMO usage (as in the DWD sample in the shared test data): station pressure is
``nonCoordinatePressure`` (010004), msl ``pressureReducedToMeanSeaLevel`` (010051); the
first ``heightOfSensorAboveLocalGroundOrDeckOfMarinePlatform`` (2 m) applies to
``airTemperature``/``dewpointTemperature``, the seventh (10 m) to ``windDirection``/
``windSpeed`` (10-minute means) and the 10-minute maximum gust.

Never import pyproj after this module: eccodes then pyproj crashes at interpreter exit.
"""

from __future__ import annotations

from pathlib import Path

import eccodes
import numpy as np
import pandas as pd

TEMPLATE = 307080
MISSING = eccodes.CODES_MISSING_DOUBLE
_T_SENSOR_KEY = "#1#heightOfSensorAboveLocalGroundOrDeckOfMarinePlatform"
_WIND_SENSOR_KEY = "#7#heightOfSensorAboveLocalGroundOrDeckOfMarinePlatform"
BAROMETER_ABOVE_GROUND_M = 1.5  # typical barometer height above the station ground


def _header(h: int, n_subsets: int, when: pd.Timestamp) -> None:
    for key, value in (
        ("edition", 4),
        ("masterTableNumber", 0),
        ("bufrHeaderCentre", 98),  # ECMWF, standing in for a generic GTS originator
        ("bufrHeaderSubCentre", 0),
        ("updateSequenceNumber", 0),
        ("dataCategory", 0),  # surface data - land
        ("internationalDataSubCategory", 2),  # main synoptic hour (WMO common table C-13)
        ("masterTablesVersionNumber", 31),
        ("localTablesVersionNumber", 0),
        ("typicalYear", when.year),
        ("typicalMonth", when.month),
        ("typicalDay", when.day),
        ("typicalHour", when.hour),
        ("typicalMinute", when.minute),
        ("typicalSecond", 0),
        ("numberOfSubsets", n_subsets),
        ("observedData", 1),
        ("compressedData", 1),
    ):
        eccodes.codes_set(h, key, value)
    # 307080 has two delayed replications (cloud layers, clouds below station level);
    # compressed messages need them equal in every subset, so both are 0.
    eccodes.codes_set_array(h, "inputDelayedDescriptorReplicationFactor", [0, 0])
    eccodes.codes_set_array(h, "unexpandedDescriptors", [TEMPLATE])


def _values(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.isfinite(x), x, MISSING)


def _data(h: int, reports: pd.DataFrame, stations: pd.DataFrame, when: pd.Timestamp) -> None:
    st = stations.loc[reports["station_id"]]
    n = len(reports)
    elev = st["elevation_m"].to_numpy(dtype=np.float64)
    ints = {
        "blockNumber": st["wmo_block"].to_numpy(),
        "stationNumber": st["wmo_station"].to_numpy(),
        "stationType": np.ones(n),  # 1 = manned station
        "year": np.full(n, when.year),
        "month": np.full(n, when.month),
        "day": np.full(n, when.day),
        "hour": np.full(n, when.hour),
        "minute": np.full(n, when.minute),
    }
    for key, arr in ints.items():
        eccodes.codes_set_array(h, key, np.asarray(arr, dtype=np.int64).tolist())
    names = [str(s)[:20] for s in st["icao"]]  # 001015 holds 20 characters
    eccodes.codes_set_string_array(h, "stationOrSiteName", names)
    doubles = {
        "latitude": st["lat"].to_numpy(),
        "longitude": st["lon"].to_numpy(),
        "heightOfStationGroundAboveMeanSeaLevel": elev,
        "heightOfBarometerAboveMeanSeaLevel": elev + BAROMETER_ABOVE_GROUND_M,
        "nonCoordinatePressure": reports["station_pressure"].to_numpy(),
        "pressureReducedToMeanSeaLevel": reports["msl"].to_numpy(),
        "airTemperature": reports["t2m"].to_numpy(),
        "dewpointTemperature": reports["dewpoint"].to_numpy(),
        "horizontalVisibility": reports["visibility_m"].to_numpy(),
        "cloudCoverTotal": reports["cloud_oktas"].to_numpy() * 12.5,  # oktas to percent
        "windDirection": reports["wind_direction"].to_numpy(),
        "windSpeed": reports["wind_speed"].to_numpy(),
        "#1#maximumWindGustSpeed": reports["wind_gust"].to_numpy(),
    }
    for key, arr in doubles.items():
        eccodes.codes_set_array(h, key, _values(arr).tolist())
    eccodes.codes_set(h, _T_SENSOR_KEY, 2.0)
    eccodes.codes_set(h, _WIND_SENSOR_KEY, 10.0)
    eccodes.codes_set(h, "#1#timeSignificance", 2)  # time averaged
    eccodes.codes_set(h, "#10#timePeriod", -10)  # over the last 10 minutes
    eccodes.codes_set(h, "#11#timePeriod", -10)  # gust: maximum of the last 10 minutes


def encode_synop_message(
    reports: pd.DataFrame, stations: pd.DataFrame, when: pd.Timestamp
) -> bytes:
    """One compressed multi-subset message holding ``reports`` (rows in subset order);
    ``stations`` is the catalogue indexed by station_id."""
    if len(reports) == 0:
        raise ValueError(f"no SYNOP reports to encode for {when}")
    unknown = set(reports["station_id"]) - set(stations.index)
    if unknown:
        raise ValueError(f"SYNOP reports for stations not in the catalogue: {sorted(unknown)[:5]}")
    h = eccodes.codes_bufr_new_from_samples("BUFR4")
    try:
        _header(h, len(reports), when)
        _data(h, reports, stations, when)
        eccodes.codes_set(h, "pack", 1)
        return bytes(eccodes.codes_get_message(h))
    finally:
        eccodes.codes_release(h)


def write_synop_file(
    path: Path, reports: pd.DataFrame, stations: pd.DataFrame, when: pd.Timestamp
) -> int:
    """Write ``<obs_dir>/synop_bufr/YYYYMMDDHH.bufr``; an empty file when every station is
    silent (so each synoptic time still has its file). Returns the number of subsets."""
    payload = encode_synop_message(reports, stations, when) if len(reports) else b""
    path.write_bytes(payload)
    return len(reports)
