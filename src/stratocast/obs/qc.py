"""Vectorised quality control over the long (report, variable) table.

Checks run in this order and a value keeps the *first* check it fails, so one bad value is
reported once, under its most basic fault:

0. ``position``: every value of a report whose position is impossible (latitude outside
   [-90, 90], longitude outside [-180, 180] — readers normalise (180, 360] — or NaN) or whose
   elevation is outside [-500, 9000] m (aircraft: flight altitude up to 20,000 m,
   ``elevation_max_by_source``), or (with a station catalogue) whose position is more
   than ``position_max_km`` (25 km) from the catalogue's position of that station; the reason
   names the value.
0b. ``time``: every value of a report dated before ``time_min`` (1850) or more than
   ``max_future_hours`` (24 h) after the wall clock.
1. ``range``: outside the canonical variable's valid range (``stratocast.vocab.variables``).
2. ``consistency``: dewpoint above temperature by more than ``dewpoint_tolerance`` (the
   dewpoint is quarantined); calm wind (0 m/s) with a direction other than 0, or a non-zero
   speed with direction 0, the WMO calm code (the direction is quarantined); a station
   pressure that does not fit the station height (against the standard atmosphere, or the
   report's own reported msl: :func:`stratocast.obs.harmonise.station_pressure_problem`).
3. ``corrected``: replaced by a correction (CCA, CCB ...) of the same report, in this run or
   already stored (:func:`check_corrections`).
4. ``duplicate``: same station, time, variable and value as an earlier row (of this run or of
   the store context): the first is kept, later copies are quarantined.
5. ``spike``: a value that jumps away from both neighbours (same station and variable, each
   within ``window_hours``) by more than ``spike_max[var]`` in the same direction.
6. ``step``: after spikes are removed, a change larger than ``step_max[var]`` from the previous
   value within ``window_hours``; the later value is quarantined.
7. ``buddy`` (only with ``QCConfig.buddy``, off by default): far from the robust mean of
   neighbouring stations at the same time (:mod:`stratocast.obs.buddy`).
8. ``derived``: u10/v10/rh2m/q2m computed from a quarantined input go with it; so do an sp
   computed from a quarantined qnh (METAR) and an msl reduced from a quarantined sp or t2m.
   Rows carry no provenance, so a derived sp/msl is recognised by reproducing it from its
   report's own values (:func:`derived_pressure`): a reported msl is never withdrawn.

Default thresholds (state them, change them in config): spike t2m 8 K, d2m 10 K, msl/sp
800 Pa; step over <= 6 h: t2m/d2m 15 K, msl/sp 2000 Pa. They are deliberately loose: frontal
passages give 10 K and 10 hPa in a few hours, and a false rejection loses a true extreme.
Context rows (already in the store) take part in duplicate and temporal checks but are never
themselves re-judged.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from pydantic import Field

from stratocast.config import ComponentConfig
from stratocast.obs.base import utc_reference
from stratocast.obs.buddy import BuddyConfig, buddy_check
from stratocast.obs.harmonise import (
    DERIVED_FROM,
    qnh_to_station_pressure_array,
    reduce_to_msl_array,
    station_pressure_problem,
    station_pressure_problems,
)
from stratocast.obs.stations import StationCatalogue
from stratocast.vocab.variables import VARIABLES

# Report positions QC accepts (the elevation bounds: the Dead Sea shore is ~-430 m, the
# highest permanent station ~5,000 m; 9,000 m is above Everest).
ELEVATION_MIN = -500.0  # m
ELEVATION_MAX = 9000.0  # m
EARTH_RADIUS_KM = 6371.0
# A derived sp/msl is recognised by recomputing it from its report's values: the match is to
# within 0.05 Pa (the table keeps elevation as float32: ~1e-3 Pa of recomputation error),
# while a reported pressure has 10 Pa steps, so a reported value matches by chance about once
# in several thousand reports, and even then only takes part in propagation.
REPRODUCE_TOLERANCE = 0.05  # Pa


class QCConfig(ComponentConfig):
    dewpoint_tolerance: float = Field(default=0.5, ge=0.0, description="K")
    window_hours: float = Field(default=6.0, gt=0.0)
    spike_max: dict[str, float] = Field(
        default_factory=lambda: {"t2m": 8.0, "d2m": 10.0, "msl": 800.0, "sp": 800.0}
    )
    step_max: dict[str, float] = Field(
        default_factory=lambda: {"t2m": 15.0, "d2m": 15.0, "msl": 2000.0, "sp": 2000.0}
    )
    elevation_max_by_source: dict[str, float] = Field(
        default_factory=lambda: {"aircraft_bufr": 20000.0},
        description="upper elevation bound (m) per source whose 'elevation' is a flight "
        "altitude, not a station height (the default 9000 m applies to all others)",
    )
    position_max_km: float = Field(
        default=25.0,
        gt=0.0,
        description="largest distance (km) of a report's position from its catalogue position",
    )
    buddy: bool = Field(default=False, description="run the spatial buddy check")
    buddy_options: BuddyConfig = Field(default_factory=BuddyConfig)
    time_min: datetime = Field(
        default=datetime(1850, 1, 1, tzinfo=UTC),
        description="earliest plausible observation time (before the first instrumental "
        "records: a flipped BUFR year decodes to one)",
    )
    max_future_hours: float = Field(
        default=24.0,
        ge=0.0,
        description="how far past the wall clock a report may be dated (clock skew, time zones)",
    )


Reason = str | Callable[[pd.DataFrame], pd.Series]


def _flag(df: pd.DataFrame, mask: pd.Series | np.ndarray, check: str, reason: Reason) -> None:
    """Set check/reason where ``mask`` and the row is not already flagged.

    ``reason`` may be a function of the flagged rows only: formatting a message for every
    row of a year of observations would cost more than all the checks together.
    """
    m = np.asarray(mask, dtype=bool) & df["check"].isna().to_numpy()
    if m.any():
        idx = df.index[m]
        df.loc[idx, "check"] = check
        df.loc[idx, "reason"] = reason if isinstance(reason, str) else reason(df.loc[idx])


def _fmt(x: pd.Series) -> pd.Series:
    # explicit dtype: an empty series would otherwise come back as float and refuse "+"
    return pd.Series([f"{v:.6g}" for v in x], index=x.index, dtype=object)


def _distance_km(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    """Great-circle distance (haversine, spherical Earth)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi, dlam = p2 - p1, np.radians(lon2 - lon1)
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlam / 2) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def check_position(
    df: pd.DataFrame,
    catalogue: StationCatalogue | None = None,
    max_km: float = 25.0,
    elevation_max_by_source: dict[str, float] | None = None,
) -> None:
    """Quarantine every value of a report with an impossible position or elevation, or one far
    from its station's catalogue position (``position``). Needs lat/lon (elevation optional);
    tables without them (callers that carry no position) are left alone.
    ``elevation_max_by_source``: sources whose elevation is a flight altitude (aircraft) get
    their own upper bound instead of ``ELEVATION_MAX``."""
    if "lat" not in df or "lon" not in df:
        return
    lat = df["lat"].to_numpy(dtype="float64")
    lon = df["lon"].to_numpy(dtype="float64")
    with np.errstate(invalid="ignore"):
        bad_lat = ~((lat >= -90.0) & (lat <= 90.0))
        bad_lon = ~((lon >= -180.0) & (lon <= 180.0))
    _flag(df, bad_lat, "position", lambda r: "latitude " + _fmt(r["lat"]) + " outside [-90, 90]")
    _flag(df, bad_lon, "position", lambda r: "longitude " + _fmt(r["lon"]) + " outside [-180, 180]")
    if "elevation" in df:
        elev = df["elevation"].to_numpy(dtype="float64")
        top = pd.Series(ELEVATION_MAX, index=df.index)
        if elevation_max_by_source and "source" in df:
            top = df["source"].map(elevation_max_by_source).fillna(ELEVATION_MAX).astype(float)
        hi = top.to_numpy(dtype="float64")
        with np.errstate(invalid="ignore"):  # NaN: height unknown, not wrong
            bad_elev = (elev < ELEVATION_MIN) | (elev > hi)
        _flag(
            df,
            bad_elev,
            "position",
            lambda r: (
                "elevation "
                + _fmt(r["elevation"].astype("float64"))
                + f" m outside [{ELEVATION_MIN:g}, "
                + _fmt(top[r.index])
                + "] m"
            ),
        )
    if catalogue is None or not len(catalogue):
        return
    ids = df["station_id"]
    known = {}
    for sid in pd.unique(ids.dropna()):
        st = catalogue.get(sid)
        if st is not None:
            known[sid] = (st.lat, st.lon)
    if not known:
        return
    cat_lat = ids.map({k: v[0] for k, v in known.items()}).to_numpy(dtype="float64")
    cat_lon = ids.map({k: v[1] for k, v in known.items()}).to_numpy(dtype="float64")
    dist = _distance_km(lat, lon, cat_lat, cat_lon)
    with np.errstate(invalid="ignore"):
        far = dist > max_km  # NaN (station not in the catalogue) is not far

    def reason(rows: pd.DataFrame) -> pd.Series:
        i = df.index.get_indexer(rows.index)
        return (
            "position ("
            + _fmt(rows["lat"])
            + ", "
            + _fmt(rows["lon"])
            + ") is "
            + pd.Series([f"{d:.1f}" for d in dist[i]], index=rows.index, dtype=object)
            + " km from the catalogue position of station "
            + rows["station_id"].astype(str)
            + " ("
            + pd.Series(
                [f"{a:.6g}, {b:.6g}" for a, b in zip(cat_lat[i], cat_lon[i], strict=True)],
                index=rows.index,
                dtype=object,
            )
            + f"), more than {max_km:g} km"
        )

    _flag(df, far, "position", reason)


def check_time(df: pd.DataFrame, earliest: datetime, max_future_hours: float) -> None:
    """Quarantine every value of a report dated before ``earliest`` or more than
    ``max_future_hours`` after now (``time``): BUFR and text formats carry no checksum, and
    one flipped bit of a BUFR year moves a report by centuries (seen: 1.8e7 hours)."""
    if "time" not in df or df.empty:
        return
    t = pd.to_datetime(df["time"], utc=True)
    latest = pd.Timestamp.now(tz="UTC") + pd.Timedelta(hours=max_future_hours)
    lo = pd.Timestamp(utc_reference(earliest))  # a naive config value means UTC
    bad = ((t < lo) | (t > latest)).to_numpy()
    _flag(
        df,
        bad,
        "time",
        lambda r: (
            "time "
            + pd.to_datetime(r["time"], utc=True).astype(str)
            + f" outside [{lo:%Y-%m-%d}, now + {max_future_hours:g} h]"
        ),
    )


def check_range(df: pd.DataFrame) -> None:
    lo = df["variable"].map({k: v.valid_min for k, v in VARIABLES.items()})
    hi = df["variable"].map({k: v.valid_max for k, v in VARIABLES.items()})
    unknown = lo.isna()
    _flag(df, unknown, "unknown_variable", "not a canonical variable: " + df["variable"])
    bad = ((df["value"] < lo) | (df["value"] > hi) | ~np.isfinite(df["value"])) & ~unknown

    def reason(rows: pd.DataFrame) -> pd.Series:
        var = rows["variable"]
        units = var.map({k: v.units for k, v in VARIABLES.items()})
        return (
            var
            + "="
            + _fmt(rows["value"])
            + " "
            + units
            + " outside valid range ["
            + _fmt(lo[rows.index])
            + ", "
            + _fmt(hi[rows.index])
            + "]"
        )

    _flag(df, bad, "range", reason)


def _per_report(df: pd.DataFrame, variable: str) -> pd.Series:
    rows = df[df["variable"] == variable]
    return pd.Series(rows["value"].to_numpy(), index=rows["report_key"].to_numpy())


def check_consistency(df: pd.DataFrame, tolerance: float, derived: pd.Series | None = None) -> None:
    key = df["report_key"]
    t = key.map(_per_report(df, "t2m"))
    td = df["value"].where(df["variable"] == "d2m")
    bad = td > t + tolerance
    _flag(
        df,
        bad,
        "consistency",
        lambda r: (
            "dewpoint " + _fmt(td[r.index]) + " K above temperature " + _fmt(t[r.index]) + " K"
        ),
    )
    ws = key.map(_per_report(df, "ws10"))
    wd = df["value"].where(df["variable"] == "wd10")
    calm_dir = (ws == 0) & (wd != 0) & wd.notna()
    _flag(
        df,
        calm_dir,
        "consistency",
        lambda r: "calm wind (0 m/s) with direction " + _fmt(wd[r.index]),
    )
    dir_zero = (ws > 0) & (wd == 0)
    _flag(
        df,
        dir_zero,
        "consistency",
        lambda r: "direction 0 (calm code) with speed " + _fmt(ws[r.index]) + " m/s",
    )
    check_station_pressure(df, derived)


def check_station_pressure(df: pd.DataFrame, derived: pd.Series | None = None) -> None:
    """sp that does not fit the station height (``consistency``), as harmonise.derive judges
    it at decode time, for every source: against the standard atmosphere, or against the
    report's own msl where it has one (a derived msl, :func:`derived_pressure`, is no
    witness). Needs ``elevation``."""
    if "elevation" not in df:
        return
    is_sp = (df["variable"] == "sp").to_numpy()
    if not is_sp.any():
        return
    if derived is None:
        derived = derived_pressure(df)
    msl_rows = (df["variable"] == "msl") & ~derived
    msl = pd.Series(
        df.loc[msl_rows, "value"].to_numpy(), index=df.loc[msl_rows, "report_key"].to_numpy()
    )
    msl = msl[~msl.index.duplicated()]
    sp_rows = df.loc[is_sp]
    witness = sp_rows["report_key"].map(msl).to_numpy(dtype="float64")
    bad = np.zeros(len(df), dtype=bool)
    bad[is_sp] = station_pressure_problems(
        sp_rows["value"].to_numpy(dtype="float64"),
        sp_rows["elevation"].to_numpy(dtype="float64"),
        witness,
    )
    if not bad.any():
        return

    def reason(rows: pd.DataFrame) -> pd.Series:
        w = rows["report_key"].map(msl)
        return pd.Series(
            [
                station_pressure_problem(v, float(h), None if m != m else m) or "sp implausible"
                for v, h, m in zip(rows["value"], rows["elevation"], w, strict=True)
            ],
            index=rows.index,
            dtype=object,
        )

    _flag(df, bad, "consistency", reason)


def derived_pressure(df: pd.DataFrame) -> pd.Series:
    """Rows (aligned with ``df``) whose sp or msl was derived by a reader, not reported.

    An sp is derived when it equals the inversion of its report's qnh
    (:func:`~stratocast.obs.harmonise.qnh_to_station_pressure`, METAR); an msl when it equals
    the WMO reduction of its report's sp, t2m (and d2m) at the row's elevation
    (:func:`~stratocast.obs.harmonise.reduce_to_msl`), within ``REPRODUCE_TOLERANCE``. Needs
    ``elevation``; without it nothing is recognised as derived.
    """
    out = pd.Series(False, index=df.index)
    if "elevation" not in df or df.empty:
        return out
    var = df["variable"]
    key = df["report_key"]

    def per_report(name: str) -> pd.Series:
        rows = df[var == name]
        s = pd.Series(rows["value"].to_numpy(dtype="float64"), index=rows["report_key"].to_numpy())
        return s[~s.index.duplicated()]

    elev = df["elevation"].to_numpy(dtype="float64")
    value = df["value"].to_numpy(dtype="float64")
    sp_rows = (var == "sp").to_numpy()
    if sp_rows.any() and (var == "qnh").any():
        qnh = key[sp_rows].map(per_report("qnh")).to_numpy(dtype="float64")
        again = qnh_to_station_pressure_array(qnh, elev[sp_rows])
        with np.errstate(invalid="ignore"):
            out[sp_rows] = np.abs(value[sp_rows] - again) <= REPRODUCE_TOLERANCE
    msl_rows = (var == "msl").to_numpy()
    if msl_rows.any() and sp_rows.any():
        k = key[msl_rows]
        sp = k.map(per_report("sp")).to_numpy(dtype="float64")
        t = k.map(per_report("t2m")).to_numpy(dtype="float64")
        td = k.map(per_report("d2m")).to_numpy(dtype="float64")
        with np.errstate(invalid="ignore", over="ignore"):
            again = reduce_to_msl_array(sp, t, elev[msl_rows], td)
            out[msl_rows] = np.abs(value[msl_rows] - again) <= REPRODUCE_TOLERANCE
    return out


# A correction bulletin (BBB = CCx, or AAx for amendments) ends the report id as ":CCA" etc.
_CORRECTION = r":(?:CC|AA)([A-Z])$"


def correction_rank(report_id: pd.Series) -> pd.Series:
    """0 for an original report, 1 for CCA/AAA, 2 for CCB/AAB ... (float, aligned)."""
    letter = report_id.astype(str).str.extract(_CORRECTION, expand=False)
    if letter.isna().all():  # the common case: no correction at all, skip the mapping
        return pd.Series(0.0, index=report_id.index)
    cat = letter.astype("category")
    ranks = {c: float(ord(c) - ord("A") + 1) for c in cat.cat.categories}
    return cat.map(ranks).astype(float).fillna(0.0)


def _correction_key(*frames: pd.DataFrame) -> list[str]:
    # a SYNOP correction says nothing about a METAR of the same station: match within a source
    key = ["station_id", "time", "variable"]
    return ["source", *key] if all("source" in f for f in frames) else key


def _best_corrections(frames: list[tuple[pd.DataFrame, str]], key: list[str]) -> pd.DataFrame:
    """Per key, the highest-ranked correction among ``frames`` (rows, label suffix): columns
    key + ``_rank`` + ``_by`` (the correcting report id). Originals (rank 0) are left out."""
    parts = []
    for f, suffix in frames:
        rank = correction_rank(f["report_id"])
        hit = rank > 0
        if hit.any():
            by = f.loc[hit, "report_id"].astype(str) + suffix
            parts.append(f.loc[hit, key].assign(_rank=rank[hit], _by=by))
    if not parts:
        return pd.DataFrame(columns=[*key, "_rank", "_by"])
    both = pd.concat(parts, ignore_index=True).sort_values("_rank", kind="stable")
    return both.drop_duplicates(key, keep="last")


def _outranked(
    rows: pd.DataFrame, best: pd.DataFrame, key: list[str]
) -> tuple[np.ndarray, pd.Series]:
    """Which ``rows`` a better-ranked correction in ``best`` replaces, and by which report."""
    if best.empty or rows.empty:
        return np.zeros(len(rows), dtype=bool), pd.Series(None, index=rows.index, dtype=object)
    m = rows[key].merge(best, on=key, how="left")  # a left merge keeps the row order
    hit = (correction_rank(rows["report_id"]).to_numpy() < m["_rank"].to_numpy()) & m[
        "_rank"
    ].notna().to_numpy()
    return hit, pd.Series(m["_by"].to_numpy(), index=rows.index)


def superseded_in_store(df: pd.DataFrame, stored: pd.DataFrame) -> pd.Series:
    """Stored rows that a correction among the new rows ``df`` replaces.

    Returns, aligned with ``stored``, the report id of the replacing correction, or None. Every
    new correction counts, even one of whose values QC later quarantines: the correction says
    the original is wrong whatever is wrong with the correction itself (as within a run).
    """
    out = pd.Series(None, index=stored.index, dtype=object)
    if df.empty or stored.empty or "report_id" not in df:
        return out
    key = _correction_key(df, stored)
    hit, by = _outranked(stored, _best_corrections([(df, "")], key), key)
    return pd.Series(np.where(hit, by.to_numpy(dtype=object), None), index=out.index, dtype=object)


def check_corrections(df: pd.DataFrame, stored: pd.DataFrame | None = None) -> None:
    """A correction replaces the report it corrects: same source, station, time and variable.

    The original and any earlier correction letter (CCA before CCB) are quarantined with
    check ``corrected`` and a reason naming the replacing report; only the latest version
    stays. ``stored`` (rows already in the store, with report_id) takes part: a late original,
    or a CCA after the CCB was stored, is quarantined here; the reverse case, a new correction
    replacing a stored row, is :func:`superseded_in_store` (ingest moves that row out of the
    store). Runs before the duplicate check, so a correction that repeats the original value
    keeps the correction, not the original.
    """
    if "report_id" not in df:  # callers without provenance cannot carry corrections
        return
    frames = [(df, "")]
    if stored is not None and len(stored) and "report_id" in stored:
        frames.append((stored, " (stored)"))
    key = _correction_key(*(f for f, _ in frames))
    hit, by = _outranked(df, _best_corrections(frames, key), key)
    _flag(df, hit, "corrected", lambda r: "replaced by correction " + by[r.index])


def check_duplicates(df: pd.DataFrame, context: pd.DataFrame | None) -> None:
    cols = ["station_id", "time", "variable", "value"]
    # Only rows still in play compete: a row already quarantined (e.g. replaced by a
    # correction) must not make its valid twin look like the duplicate.
    live = df["check"].isna().to_numpy()
    dup = np.zeros(len(df), dtype=bool)
    rows = df.loc[live, cols]
    if context is not None and len(context):
        both = pd.concat([context[cols], rows], ignore_index=True)
        dup[live] = both.duplicated(keep="first").to_numpy()[len(context) :]
    else:
        dup[live] = rows.duplicated(keep="first").to_numpy()
    _flag(df, dup, "duplicate", "exact duplicate of an earlier report (station, time, value)")


def _neighbours(frame: pd.DataFrame, window: pd.Timedelta) -> tuple[pd.Series, pd.Series]:
    """Value differences to the previous/next row of the same series (NaN beyond window)."""
    same_prev = (frame["station_id"] == frame["station_id"].shift(1)) & (
        frame["variable"] == frame["variable"].shift(1)
    )
    same_next = (frame["station_id"] == frame["station_id"].shift(-1)) & (
        frame["variable"] == frame["variable"].shift(-1)
    )
    dt_prev = frame["time"] - frame["time"].shift(1)
    dt_next = frame["time"].shift(-1) - frame["time"]
    d_prev = (frame["value"] - frame["value"].shift(1)).where(same_prev & (dt_prev <= window))
    d_next = (frame["value"] - frame["value"].shift(-1)).where(same_next & (dt_next <= window))
    return d_prev, d_next


def check_temporal(df: pd.DataFrame, cfg: QCConfig, context: pd.DataFrame | None) -> None:
    variables = set(cfg.spike_max) | set(cfg.step_max)
    cols = ["station_id", "time", "variable", "value"]
    new = df.loc[df["check"].isna() & df["variable"].isin(variables), cols].assign(_new=True)
    parts = [new]
    if context is not None and len(context):
        parts.append(context.loc[context["variable"].isin(variables), cols].assign(_new=False))
    frame = pd.concat(parts).sort_values(["station_id", "variable", "time"], kind="stable")
    if frame.empty:
        return
    window = pd.Timedelta(hours=cfg.window_hours)
    spike_thr = frame["variable"].map(cfg.spike_max)
    d_prev, d_next = _neighbours(frame, window)
    spike = (np.sign(d_prev) == np.sign(d_next)) & (d_prev.abs() > spike_thr)
    spike &= d_next.abs() > spike_thr
    spike &= frame["_new"]
    sp = frame[spike]
    spike_reason = (
        sp["variable"]
        + " spike: "
        + _fmt(d_prev[spike])
        + " then "
        + _fmt(-d_next[spike])
        + " (threshold "
        + _fmt(spike_thr[spike])
        + ")"
    )
    _flag(df, df.index.isin(sp.index), "spike", lambda r: spike_reason[r.index])

    rest = frame[~spike]
    step_thr = rest["variable"].map(cfg.step_max)
    d_prev, _ = _neighbours(rest, window)
    step = (d_prev.abs() > step_thr) & rest["_new"]
    st = rest[step]
    step_reason = (
        st["variable"]
        + " step "
        + _fmt(d_prev[step])
        + f" within {cfg.window_hours:g} h (threshold "
        + _fmt(step_thr[step])
        + ")"
    )
    _flag(df, df.index.isin(st.index), "step", lambda r: step_reason[r.index])


def check_buddy(df: pd.DataFrame, cfg: BuddyConfig) -> None:
    reasons = buddy_check(df, cfg)
    _flag(df, df.index.isin(reasons.index), "buddy", lambda r: reasons[r.index])


# Derivations that hold only for some rows (recognised by derived_pressure), in the order a
# quarantine flows: qnh -> sp -> msl.
_DERIVED_PRESSURE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sp", ("qnh",)),
    ("msl", ("sp", "t2m")),
)


def propagate_derived(df: pd.DataFrame, derived: pd.Series | None = None) -> None:
    if not df["check"].notna().any():
        return
    if derived is None:
        derived = derived_pressure(df)
    for name, inputs in _DERIVED_PRESSURE:  # first: an sp it takes down takes down its msl
        rows = (df["variable"] == name) & derived
        if rows.any():
            _propagate(df, rows, inputs)
    for name, inputs in DERIVED_FROM.items():
        _propagate(df, df["variable"] == name, inputs)


def _propagate(df: pd.DataFrame, rows: pd.Series, inputs: tuple[str, ...]) -> None:
    flagged = df.loc[df["check"].notna(), ["report_key", "variable"]]
    for name in inputs:
        bad_keys = flagged.loc[flagged["variable"] == name, "report_key"]
        if len(bad_keys):
            mask = rows & df["report_key"].isin(bad_keys)
            _flag(df, mask, "derived", f"derived from quarantined {name}")


def run_qc(
    df: pd.DataFrame,
    cfg: QCConfig,
    context: pd.DataFrame | None = None,
    stored: pd.DataFrame | None = None,
    catalogue: StationCatalogue | None = None,
) -> pd.DataFrame:
    """Fill ``check``/``reason`` for failing rows of ``df`` (a copy is returned).

    ``df`` needs station_id, time, variable, value, report_key, check, reason (check/reason
    may carry decode-time flags). ``context`` has station_id, time, variable, value of rows
    already accepted earlier (duplicate and temporal checks); ``stored`` (default: context)
    those rows with source and report_id, for corrections against the store. Callers leave
    out of both the stored rows this run's corrections retract (:func:`superseded_in_store`).
    """
    out = df.copy()
    if out.empty:
        return out
    out.index = pd.RangeIndex(len(out))
    check_position(out, catalogue, cfg.position_max_km, cfg.elevation_max_by_source)
    check_time(out, cfg.time_min, cfg.max_future_hours)
    derived = derived_pressure(out)  # which sp/msl rows a reader derived (propagation)
    check_range(out)
    check_consistency(out, cfg.dewpoint_tolerance, derived)
    check_corrections(out, context if stored is None else stored)
    check_duplicates(out, context)
    check_temporal(out, cfg, context)
    if cfg.buddy:
        check_buddy(out, cfg.buddy_options)
    propagate_derived(out, derived)
    return out
