"""When each of the world's reports arrives, the way real feeds deliver them.

The world writes whole files (``metar/YYYYMMDD.txt`` day collectives, one
``synop_bufr/YYYYMMDDHH.bufr`` per synoptic time); a real centre receives them piecemeal. This
module cuts the written files into deliverable *items* and gives each an arrival time:

* METAR: one item per bulletin (a byte range of the day file, framing included), arriving
  ``metar_delay_min`` (default 1-10 min) after its observation time;
* SYNOP: one item per synoptic-time BUFR file, ``synop_delay_min`` (10-60 min) after the hour
  (an empty file, a time at which every station was silent, is not sent);
* a late tail: a ``late_fraction`` of items arrive ``late_hours`` (1-6 h) later still;
* corrections: some METAR reports that carry an injected gross error are re-sent with the true
  values as ``COR`` reports in a ``CCA`` bulletin (``corrections/metar/*.txt``, written by
  :func:`write_metar_corrections`), ``correction_delay_min`` after the bulletin they correct.
  SYNOP BUFR has no correction items: its reader does not read BUFR update sequence numbers;
* outages: each feed (``metar``, ``synop``) falls silent now and then (``outage_rate`` per
  feed-day, ``outage_hours`` long); what would have arrived meanwhile is held back and
  arrives, store-and-forward fashion, within 10 min of the feed's return.

Everything is drawn from ``seed`` in a fixed order, so a schedule is a pure function of the
files and the config. The schedule is written beside the files as ``arrivals.csv`` (one row
per item: ``item`` = its path inside an inbox, ``kind`` = the ingest source, ``path``,
``offset`` and ``length`` of its bytes in the written file, ``sha256`` of those bytes,
``obs_time``, ``arrival`` and flags ``late``/``outage``/``correction``) and ``arrivals.json``
(format version, config, outages, counts). The existing files are not touched: their bytes
are those the world wrote before arrivals existed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from stratocast.config import ComponentConfig
from stratocast.errors import StratocastError
from stratocast.world.metar_writer import EOL, format_metar, heading_for, wrap_report

ARRIVALS_CSV = "arrivals.csv"
ARRIVALS_META = "arrivals.json"
CORRECTIONS_DIR = "corrections"
SCHEDULE_VERSION = 1
#: item kind (= the ingest source that reads it) -> the feed an outage silences
FEEDS: dict[str, str] = {"metar": "metar", "synop_bufr": "synop"}
ITEM_COLUMNS = [
    "item",
    "kind",
    "path",
    "offset",
    "length",
    "sha256",
    "obs_time",
    "arrival",
    "late",
    "outage",
    "correction",
]
REPORTS_PER_BULLETIN = 60
OUTAGE_FLUSH_MIN = 10.0  # a returning feed delivers its backlog within this many minutes
_TAG_ARRIVAL, _TAG_OUTAGE, _TAG_CORRECTION = 21, 22, 23
_HEADING = re.compile(r"^(?P<tt>[A-Z]{4}\d{2}) (?P<cccc>[A-Z]{4}) (?P<dd>\d\d)(?P<hhmm>\d{4})")


class ArrivalError(StratocastError, ValueError):
    """A written observation file the schedule cannot cut into items, or a bad manifest."""


def _range(lo_hi: tuple[float, float], name: str) -> None:
    if not 0.0 <= lo_hi[0] <= lo_hi[1]:
        raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, got {lo_hi}")


class ArrivalConfig(ComponentConfig):
    """Delays, late tail, corrections and outages of the simulated feeds."""

    seed: int | None = Field(default=None, description="None: the network's seed")
    metar_delay_min: tuple[float, float] = (1.0, 10.0)
    synop_delay_min: tuple[float, float] = (10.0, 60.0)
    late_fraction: float = Field(default=0.03, ge=0.0, le=1.0)
    late_hours: tuple[float, float] = (1.0, 6.0)
    # of the METAR reports carrying an injected gross error, the share re-sent corrected
    correction_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    correction_delay_min: tuple[float, float] = (20.0, 180.0)
    outage_rate: float = Field(default=0.02, ge=0.0, le=1.0)  # per feed-day
    outage_hours: tuple[float, float] = (2.0, 8.0)

    @model_validator(mode="after")
    def _ranges(self) -> ArrivalConfig:
        for name in ("metar_delay_min", "synop_delay_min", "late_hours", "correction_delay_min"):
            _range(getattr(self, name), name)
        _range(self.outage_hours, "outage_hours")
        return self


@dataclass(frozen=True)
class Schedule:
    """The items of one observation directory (``root``) and when each arrives."""

    root: Path
    items: pd.DataFrame  # ITEM_COLUMNS, sorted by arrival then item
    outages: pd.DataFrame  # feed, start, end

    def payload(self, row: Any) -> bytes:
        """The bytes of one item (a row of ``items``), checked against its sha256."""
        with open(self.root / str(row.path), "rb") as f:
            f.seek(int(row.offset))
            data = f.read(int(row.length))
        if hashlib.sha256(data).hexdigest() != row.sha256:
            raise ArrivalError(
                f"{self.root / str(row.path)} bytes {row.offset}+{row.length} no longer match "
                f"the schedule's sha256 for {row.item}: the files changed after the schedule"
            )
        return data


# ------------------------------------------------------------------------------ items


def _day_of(path: Path) -> pd.Timestamp:
    m = re.fullmatch(r"(\d{8})(\d{2})?(\d{2})?(?:_.*)?", path.stem)
    if m is None:
        raise ArrivalError(f"{path}: name carries no YYYYMMDD[HH[MM]] date")
    return pd.Timestamp(m.group(1) + (m.group(2) or "00") + (m.group(3) or "00"), tz="UTC")


def metar_bulletins(data: bytes, where: str) -> list[tuple[int, int, str, str]]:
    """``(offset, length, TTAAii, CCCC DDHHMM)`` of each SOH-framed bulletin in ``data``."""
    starts = [m.start() for m in re.finditer(b"\x01", data)]
    if data and (not starts or starts[0] != 0):
        raise ArrivalError(f"{where}: does not start with a bulletin (SOH)")
    out = []
    for a, b in zip(starts, [*starts[1:], len(data)], strict=True):
        lines = data[a:b].decode("ascii").split(EOL)
        head = _HEADING.match(lines[2]) if len(lines) > 2 else None
        if head is None:
            raise ArrivalError(f"{where} byte {a}: no WMO abbreviated heading")
        out.append((a, b - a, head["tt"], f"{head['cccc']} {head['dd']}{head['hhmm']}"))
    return out


def _item_rows(root: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    metar = sorted((root / "metar").glob("*.txt"))
    cor = sorted((root / CORRECTIONS_DIR / "metar").glob("*.txt"))
    for path, is_cor in [(p, False) for p in metar] + [(p, True) for p in cor]:
        data = path.read_bytes()
        day = _day_of(path).normalize()
        for off, n, tt, rest in metar_bulletins(data, str(path)):
            cccc, ddhhmm = rest.split()
            if int(ddhhmm[:2]) != day.day:
                raise ArrivalError(f"{path} byte {off}: heading day {ddhhmm[:2]} is not the file's")
            obs = day + pd.Timedelta(hours=int(ddhhmm[2:4]), minutes=int(ddhhmm[4:]))
            suffix = "_CCA" if is_cor else ""
            rows.append(
                {
                    "_group": f"{obs:%Y%m%d%H%M}_{tt[:4]}_{cccc}",
                    "item": f"metar/{obs:%Y%m%d%H%M}_{tt}_{cccc}{suffix}.txt",
                    "kind": "metar",
                    "path": path.relative_to(root).as_posix(),
                    "offset": off,
                    "length": n,
                    "sha256": hashlib.sha256(data[off : off + n]).hexdigest(),
                    "obs_time": obs,
                    "correction": is_cor,
                }
            )
    for path in sorted((root / "synop_bufr").glob("*.bufr")):
        data = path.read_bytes()
        if not data:  # every station silent: nothing is sent
            continue
        rows.append(
            {
                "item": f"synop_bufr/{path.name}",
                "kind": "synop_bufr",
                "path": path.relative_to(root).as_posix(),
                "offset": 0,
                "length": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "obs_time": _day_of(path),
                "correction": False,
                "_group": path.name,
            }
        )
    return rows


# ---------------------------------------------------------------------------- arrivals


# Arrival arithmetic runs on whole epoch seconds (int64): a schedule has one-second resolution,
# and integers keep pandas' datetime units (ns, us) out of the way.


def _seconds(rng: np.random.Generator, lo_hi_min: tuple[float, float], n: int) -> np.ndarray:
    """``n`` uniform durations in ``lo_hi_min`` minutes, as whole seconds."""
    return np.floor(rng.uniform(lo_hi_min[0], lo_hi_min[1], n) * 60.0).astype(np.int64)


def _epoch_s(t: pd.Series) -> np.ndarray:
    return (t - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy().astype(np.int64)


def _plan_feed(items: pd.DataFrame, cfg: ArrivalConfig, seed: int, feed_idx: int) -> pd.DataFrame:
    """Base delay and late tail for originals; corrections after what they correct."""
    out = items.sort_values(["obs_time", "item"], ignore_index=True)
    orig = ~out["correction"].to_numpy(dtype=bool)
    rng = np.random.default_rng([seed, _TAG_ARRIVAL, feed_idx])
    n = int(orig.sum())
    delay = cfg.metar_delay_min if out["kind"].iloc[0] == "metar" else cfg.synop_delay_min
    base = _seconds(rng, delay, n)
    late = rng.random(n) < cfg.late_fraction
    extra = _seconds(rng, (cfg.late_hours[0] * 60.0, cfg.late_hours[1] * 60.0), n)
    t = _epoch_s(out["obs_time"])
    t[orig] += base + np.where(late, extra, 0)
    is_late = np.zeros(len(out), dtype=bool)
    is_late[orig] = late
    if (~orig).any():
        # a CCA bulletin follows the last original bulletin of its heading and time
        groups = out["_group"].to_numpy()
        last = pd.Series(t[orig]).groupby(groups[orig]).max()
        after = pd.Series(groups[~orig]).map(last).to_numpy(dtype=float)
        fallback = t[~orig] + int(delay[1] * 60.0)
        crng = np.random.default_rng([seed, _TAG_CORRECTION, feed_idx])
        delays = _seconds(crng, cfg.correction_delay_min, int((~orig).sum()))
        t[~orig] = np.where(np.isnan(after), fallback, np.nan_to_num(after)).astype(np.int64)
        t[~orig] += delays
    return out.assign(_t=t, late=is_late, outage=False)


def _plan_outages(
    t: np.ndarray, t0: int, cfg: ArrivalConfig, seed: int, feed_idx: int
) -> np.ndarray:
    """``[n, 2]`` (start, end) epoch seconds of one feed's outages, in start order, over the
    days from ``t0`` (midnight before the first observation) to the last arrival."""
    rng = np.random.default_rng([seed, _TAG_OUTAGE, feed_idx])
    span = max(int(t.max()) - t0, 86400)
    n = int(rng.poisson(cfg.outage_rate * span / 86400.0))
    start = t0 + np.sort(np.floor(rng.random(n) * span).astype(np.int64))
    dur = _seconds(rng, (cfg.outage_hours[0] * 60.0, cfg.outage_hours[1] * 60.0), n)
    return np.stack([start, start + dur], axis=1)


def _apply_outages(t: np.ndarray, outages: np.ndarray, seed: int, feed_idx: int) -> np.ndarray:
    """Hold what would arrive during an outage until it ends (``t`` in place); in start
    order, so a backlog that lands in a later outage is held again. Returns who was held."""
    rng = np.random.default_rng([seed, _TAG_OUTAGE, feed_idx, 1])
    held = np.zeros(len(t), dtype=bool)
    for start, end in outages:
        hit = (t >= start) & (t < end)
        t[hit] = end + _seconds(rng, (0.0, OUTAGE_FLUSH_MIN), int(hit.sum()))
        held |= hit
    return held


def _utc_s(seconds: np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(seconds, unit="s", utc=True)


def plan_schedule(root: Path, cfg: ArrivalConfig, seed: int = 0) -> Schedule:
    """The schedule of the files under ``root`` (no file written); ``cfg.seed`` wins."""
    root = Path(root)
    seed = cfg.seed if cfg.seed is not None else seed
    rows = _item_rows(root)
    if not rows:
        empty = pd.DataFrame(columns=ITEM_COLUMNS)
        return Schedule(root, empty, pd.DataFrame(columns=["feed", "start", "end"]))
    items = pd.DataFrame(rows)
    if items["item"].duplicated().any():
        dup = items.loc[items["item"].duplicated(), "item"].iloc[0]
        raise ArrivalError(f"{root}: two bulletins would be delivered as {dup}")
    parts, outages = [], []
    for idx, (kind, feed) in enumerate(FEEDS.items()):
        sub = items[items["kind"] == kind]
        if sub.empty:
            continue
        planned = _plan_feed(sub, cfg, seed, idx)
        t = planned["_t"].to_numpy().copy()
        t0 = int(_epoch_s(planned["obs_time"].dt.normalize()).min())
        out = _plan_outages(t, t0, cfg, seed, idx)
        planned["outage"] = _apply_outages(t, out, seed, idx)
        planned["arrival"] = _utc_s(t)
        parts.append(planned)
        outages.append(
            pd.DataFrame({"feed": feed, "start": _utc_s(out[:, 0]), "end": _utc_s(out[:, 1])})
        )
    df = pd.concat(parts, ignore_index=True)
    df = df.sort_values(["arrival", "item"], ignore_index=True)[ITEM_COLUMNS]
    return Schedule(root, df, pd.concat(outages, ignore_index=True))


def _iso(s: pd.Series) -> pd.Series:
    return s.dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_schedule(root: Path, cfg: ArrivalConfig, seed: int = 0) -> Schedule:
    """Plan the schedule of ``root`` and write ``arrivals.csv`` and ``arrivals.json`` there
    (each atomically: temp file, then rename)."""
    sched = plan_schedule(root, cfg, seed)
    csv = sched.items.copy()
    for c in ("obs_time", "arrival"):
        csv[c] = _iso(csv[c]) if len(csv) else csv[c]
    tmp = root / f".{ARRIVALS_CSV}.{os.getpid()}.tmp"
    csv.to_csv(tmp, index=False)
    os.replace(tmp, root / ARRIVALS_CSV)
    items = sched.items
    meta = {
        "version": SCHEDULE_VERSION,
        "config": cfg.model_dump(),
        "seed": cfg.seed if cfg.seed is not None else seed,
        "outages": [
            {"feed": f, "start": f"{a:%Y-%m-%dT%H:%M:%SZ}", "end": f"{b:%Y-%m-%dT%H:%M:%SZ}"}
            for f, a, b in zip(
                sched.outages["feed"], sched.outages["start"], sched.outages["end"], strict=True
            )
        ],
        "counts": {
            kind: {
                "items": int((items["kind"] == kind).sum()),
                "late": int(((items["kind"] == kind) & items["late"]).sum()),
                "outage": int(((items["kind"] == kind) & items["outage"]).sum()),
                "correction": int(((items["kind"] == kind) & items["correction"]).sum()),
            }
            for kind in FEEDS
        },
    }
    tmp = root / f".{ARRIVALS_META}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, root / ARRIVALS_META)
    return sched


def read_arrivals(manifest: Path | str) -> pd.DataFrame:
    """The items of an ``arrivals.csv`` (or of the directory holding one), times as UTC."""
    path = Path(manifest)
    if path.is_dir():
        path = path / ARRIVALS_CSV
    if not path.is_file():
        raise ArrivalError(f"arrival manifest {path} not found (written by `stratocast world`)")
    df = pd.read_csv(path, dtype={"item": str, "kind": str, "path": str, "sha256": str})
    missing = set(ITEM_COLUMNS) - set(df.columns)
    if missing:
        raise ArrivalError(f"{path}: not an arrival manifest, lacks columns {sorted(missing)}")
    for c in ("obs_time", "arrival"):
        df[c] = pd.to_datetime(df[c], utc=True, format="%Y-%m-%dT%H:%M:%SZ")
    for c in ("late", "outage", "correction"):
        df[c] = df[c].astype(bool)
    return df[ITEM_COLUMNS]


def load_schedule(root: Path | str) -> Schedule:
    """The schedule written beside the files under ``root``."""
    root = Path(root)
    items = read_arrivals(root)
    meta = json.loads((root / ARRIVALS_META).read_text())
    out = pd.DataFrame(meta["outages"], columns=["feed", "start", "end"])
    for c in ("start", "end"):
        out[c] = pd.to_datetime(out[c], utc=True)
    return Schedule(root, items, out)


# ------------------------------------------------------------------------- corrections


def correction_rows(
    reports: pd.DataFrame, injected: pd.DataFrame, fraction: float, rng: np.random.Generator
) -> pd.DataFrame:
    """The true values of a ``fraction`` of the gross-error reports of one METAR chunk: the
    report rows with the corrupted value put back (``injected`` logs the original)."""
    gross = injected[injected["kind"] != "duplicate"].reset_index(drop=True)
    pick = gross[rng.random(len(gross)) < fraction]
    if pick.empty:
        return reports.iloc[:0]
    first = reports[~reports["is_duplicate"]].set_index(["station_id", "time"])
    rows = []
    for st, t, var, old, new in zip(
        pick["station_id"],
        pick["time"],
        pick["variable"],
        pick["original_value"],
        pick["written_value"],
        strict=True,
    ):
        row = first.loc[(st, t)].copy()
        row[var] = old
        if var == "msl":  # the offset moved station pressure and QNH with msl
            row["station_pressure"] -= new - old
            row["qnh"] -= new - old
        rows.append(row.rename((st, t)))
    return pd.DataFrame(rows).rename_axis(["station_id", "time"]).reset_index()


def cor_report(row: dict[str, Any], us: bool) -> str:
    """A METAR correction: the report with ``COR`` after its day/time group (FM 15)."""
    station, when, rest = format_metar(row, us).split(" ", 2)
    return f"{station} {when} COR {rest}"


def write_metar_corrections(rows: pd.DataFrame, us: pd.Series, root: Path) -> int:
    """Write ``corrections/metar/YYYYMMDDHHMM_TTAAii_CCCC.txt``, one CCA bulletin each, by
    heading and time (60 reports a bulletin, as the day files). Returns the files written."""
    if rows.empty:
        return 0
    out = Path(root) / CORRECTIONS_DIR / "metar"
    out.mkdir(parents=True, exist_ok=True)
    rows = rows.sort_values(["time", "station_id"], ignore_index=True)
    heads = [heading_for(s) for s in rows["station_id"]]
    rows = rows.assign(_tt=[h[0] for h in heads], _cccc=[h[1] for h in heads])
    n = 0
    for (when, tt, cccc), grp in rows.groupby(["time", "_tt", "_cccc"], sort=True):
        ts = pd.Timestamp(when)
        records = grp.to_dict("records")
        for part in range(0, len(records), REPORTS_PER_BULLETIN):
            ii = 70 + part // REPORTS_PER_BULLETIN
            chosen = records[part : part + REPORTS_PER_BULLETIN]
            body = [
                line
                for r in chosen
                for line in wrap_report(cor_report(r, bool(us.get(r["station_id"], False))))
            ]
            heading = f"{tt}{ii:02d} {cccc} {ts:%d%H%M} CCA"
            text = EOL.join(["\x01", f"{n % 1000 + 1:03d} ", heading, "METAR", *body])
            path = out / f"{ts:%Y%m%d%H%M}_{tt}{ii:02d}_{cccc}.txt"
            path.write_bytes((text + EOL + "\x03" + EOL).encode("ascii"))
            n += 1
    return n
