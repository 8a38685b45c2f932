"""The independent METAR decoder the tests and ``benchmarks/ingest.py`` compare against.

The PyPI ``metar`` package (a dev dependency, imported on first use) decodes a report into
stratocast's canonical variables and SI units, so both sides can be compared value for value.
Conventions follow stratocast's: the altimeter setting is ``qnh``, only the SLP group is
``msl``; knots are converted with the exact 1852/3600 m/s (the package's own
``value("MPS")`` rounds the knot to 0.514444).
"""

from __future__ import annotations

import warnings

SPEED_SI = {"KT": 1852.0 / 3600.0, "MPS": 1.0, "KMH": 1.0 / 3.6}  # exact definitions


def metar_package_values(text: str, month: int, year: int) -> dict[str, float] | None:
    """``text`` decoded by ``metar.Metar.Metar`` (lenient mode); None when it refuses it."""
    from metar.Metar import Metar, ParserError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # strict=False warns about every unparsed group
            m = Metar(text, month=month, year=year, strict=False)
    except ParserError:
        return None
    out: dict[str, float] = {}
    if m.temp is not None:
        out["t2m"] = m.temp.value("C") + 273.15
    if m.dewpt is not None:
        out["d2m"] = m.dewpt.value("C") + 273.15
    if m.wind_speed is not None:
        out["ws10"] = m.wind_speed.value() * SPEED_SI[m.wind_speed._units]
    if m.wind_dir is not None:
        out["wd10"] = m.wind_dir.value()
    if m.press is not None:
        out["qnh"] = m.press.value("HPA") * 100.0
    if m.press_sea_level is not None:
        out["msl"] = m.press_sea_level.value("HPA") * 100.0
    return out
