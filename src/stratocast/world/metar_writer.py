"""METAR text in NWS-collective files, one file per UTC day.

Layout mimics the real collectives in the shared test data: each bulletin is framed by
SOH (``\\x01``) and ETX (``\\x03``), lines end in ``\\r\\r\\n``, a 3-digit sequence number, a
WMO abbreviated heading (``SAUS70 KWBC 011200``), a ``METAR`` line, then reports (without
the per-report ``METAR`` keyword), wrapped at 69 characters with 5-space continuation lines,
each ending in ``=``.

Encoding follows ICAO Annex 3 / WMO FM 15: wind direction to 10 degrees, speed whole knots,
temperature and dewpoint whole degrees C with ``M`` for negative. US stations (the FAA/NWS
convention) report visibility in statute miles, altimeter ``A`` in hundredths of inHg and a
remark section with ``SLP`` (msl, tenths of hPa) and the ``T`` group (0.1 C); all other
stations report visibility in metres and ``Q`` QNH in whole hPa.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

KT_PER_MS = 1.0 / 0.514444
PA_PER_INHG = 3386.389
M_PER_SM = 1609.344
EOL = "\r\r\n"
LINE_WIDTH = 69
REPORTS_PER_BULLETIN = 60  # keeps bulletins well under the WMO size limit

# Abbreviated heading (TTAA + originating centre) by first letter of the ICAO id.
_HEADINGS = {
    "K": ("SAUS", "KWBC"),
    "P": ("SAUS", "KWBC"),
    "C": ("SACN", "CWAO"),
    "M": ("SAMX", "KWBC"),
    "T": ("SACA", "KWBC"),
    "S": ("SASA", "SBBR"),
    "E": ("SAEU", "EGRR"),
    "L": ("SAEU", "EGRR"),
    "B": ("SAEU", "EGRR"),
    "U": ("SARS", "RUMS"),
    "O": ("SAME", "OEJD"),
    "V": ("SAAS", "VIDP"),
    "R": ("SAAS", "RJTD"),
    "Z": ("SAAS", "BABJ"),
    "W": ("SAAS", "WSSS"),
    "D": ("SAAF", "FAPR"),
    "F": ("SAAF", "FAPR"),
    "G": ("SAAF", "FAPR"),
    "H": ("SAAF", "FAPR"),
    "Y": ("SAAU", "AMMC"),
    "N": ("SAPA", "NZKL"),
    "A": ("SAPA", "NZKL"),
}
_DEFAULT_HEADING = ("SAXX", "KWBC")


def heading_for(icao: str) -> tuple[str, str]:
    return _HEADINGS.get(icao[:1], _DEFAULT_HEADING)


def whole_celsius(t_c: float) -> str:
    """Whole degrees C, half up (towards warmer), ``M`` prefix below zero (``M00`` too)."""
    r = int(np.floor(t_c + 0.5))
    return f"M{abs(r):02d}" if t_c < 0 else f"{r:02d}"


def tenths_celsius(t_c: float) -> str:
    """The US remark T-group half: sign digit (1 = negative) and three digits of 0.1 C."""
    r = int(np.floor(abs(t_c) * 10.0 + 0.5))
    return f"{1 if t_c < 0 and r else 0}{r:03d}"


def wind_group(speed_ms: float, direction_deg: float, gust_ms: float) -> str:
    spd = int(np.floor(speed_ms * KT_PER_MS + 0.5))
    if spd == 0:
        return "00000KT"
    ddd = int(np.floor(direction_deg / 10.0 + 0.5)) * 10 % 360 or 360
    gust = "" if np.isnan(gust_ms) else f"G{int(np.floor(gust_ms * KT_PER_MS + 0.5)):02d}"
    # a gust is reported only when it exceeds the mean speed by 10 kt or more
    if gust and int(gust[1:]) < spd + 10:
        gust = ""
    return f"{ddd:03d}{spd:02d}{gust}KT"


_SM_STEPS = ((0.25, "1/4"), (0.5, "1/2"), (0.75, "3/4"), (1.0, "1"), (1.5, "1 1/2"))


def visibility_group(vis_m: float, us: bool) -> str:
    if not us:
        return "9999" if vis_m >= 10000 else f"{int(vis_m // 100 * 100):04d}"
    sm = vis_m / M_PER_SM
    if sm >= 10 or vis_m >= 10000:  # 10 km or more: "unrestricted" in both conventions
        return "10SM"
    if sm >= 2:
        return f"{int(sm)}SM"
    label = "M1/4"
    for step, text in _SM_STEPS:
        if sm >= step:
            label = text
    return f"{label}SM"


def cloud_group(oktas: float, base_ft: float, us: bool) -> str:
    if oktas <= 0:
        return "CLR" if us else "NSC"
    cover = "FEW" if oktas <= 2 else "SCT" if oktas <= 4 else "BKN" if oktas <= 7 else "OVC"
    return f"{cover}{int(base_ft // 100):03d}"


def format_metar(r: Mapping[str, Any], us: bool) -> str:
    """One METAR report (no ``METAR`` keyword, no ``=``) from an operator report row."""
    t_c = float(r["t2m"]) - 273.15
    td_c = float(r["dewpoint"]) - 273.15
    vis = float(r["visibility_m"])
    oktas = float(r["cloud_oktas"])
    ts = pd.Timestamp(r["time"])
    groups = [str(r["station_id"]), f"{ts:%d%H%M}Z"]
    groups.append(
        wind_group(float(r["wind_speed"]), float(r["wind_direction"]), float(r["wind_gust"]))
    )
    if not us and vis >= 10000 and oktas <= 0:
        groups.append("CAVOK")
    else:
        groups += [visibility_group(vis, us), cloud_group(oktas, float(r["cloud_base_ft"]), us)]
    groups.append(f"{whole_celsius(t_c)}/{whole_celsius(td_c)}")
    qnh = float(r["qnh"])
    if us:
        groups.append(f"A{int(np.floor(qnh / PA_PER_INHG * 100.0)):04d}")
        slp = int(np.floor(float(r["msl"]) / 10.0 + 0.5)) % 1000
        groups += ["RMK", "AO2", f"SLP{slp:03d}", f"T{tenths_celsius(t_c)}{tenths_celsius(td_c)}"]
    else:
        groups.append(f"Q{int(np.floor(qnh / 100.0)):04d}")  # ICAO: QNH rounded down
    return " ".join(groups)


def wrap_report(text: str) -> list[str]:
    """Wrap at group boundaries like the NWS does: continuation lines indented 5 spaces."""
    lines: list[str] = []
    current = ""
    for group in text.split(" "):
        indent = "     " if lines else ""
        if current and len(indent) + len(current) + 1 + len(group) > LINE_WIDTH:
            lines.append(indent + current)
            current = group
        else:
            current = f"{current} {group}" if current else group
    lines.append(("     " if lines else "") + current + "=")
    return lines


def _bulletin(seq: int, heading: str, reports: list[str]) -> str:
    body = [line for rep in reports for line in wrap_report(rep)]
    lines = ["\x01", f"{seq % 1000:03d} ", heading, "METAR", *body]
    return EOL.join(lines) + EOL + "\x03" + EOL


_FIELDS = (
    "station_id",
    "time",
    "t2m",
    "dewpoint",
    "wind_speed",
    "wind_direction",
    "wind_gust",
    "visibility_m",
    "cloud_oktas",
    "cloud_base_ft",
    "qnh",
    "msl",
)


def write_metar_day(path: Path, reports: pd.DataFrame, us: pd.Series) -> int:
    """Write one day's reports as bulletins grouped by observation time and region;
    ``us`` maps station_id to whether US conventions apply. Returns bulletins written."""
    is_us = us.reindex(reports["station_id"]).fillna(False).to_numpy(dtype=bool).tolist()
    columns = [reports[f].tolist() for f in _FIELDS]  # plain lists: pandas rows are slow
    records = [dict(zip(_FIELDS, values, strict=True)) for values in zip(*columns, strict=True)]
    formatted = [format_metar(r, u) for r, u in zip(records, is_us, strict=True)]
    keys = pd.DataFrame(
        {"time": reports["time"].to_numpy(), "head": [" ".join(heading_for(s)) for s in columns[0]]}
    )
    text: list[str] = []
    seq = 0
    for (when, head), rows in sorted(keys.groupby(["time", "head"]).indices.items()):
        ts = pd.Timestamp(when)
        tt, centre = str(head).split()
        for part in range(0, len(rows), REPORTS_PER_BULLETIN):
            seq += 1
            heading = f"{tt}{70 + part // REPORTS_PER_BULLETIN:02d} {centre} {ts:%d%H%M}"
            chosen = [formatted[i] for i in rows[part : part + REPORTS_PER_BULLETIN]]
            text.append(_bulletin(seq, heading, chosen))
    path.write_bytes("".join(text).encode("ascii"))
    return seq
