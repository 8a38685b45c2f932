"""Station series as tables: CSV or Parquet exports (IEM ASOS/mesonet downloads and the like).

Registry name ``table``. One row is one report: a station at a time with one column per
element. Nothing about the columns is assumed: the run config says which column holds what,
in which unit::

    sources:
      - name: table
        paths: [asos/*.csv]
        options:
          station: station          # column of station ids
          time: valid               # column of observation times
          timezone: UTC             # zone of times written without an offset
          lat: lat                  # position columns (optional: else the station catalogue)
          lon: lon
          elevation: elevation
          elevation_units: m
          columns:                  # column -> canonical variable and the column's unit
            tmpf: {variable: t2m, units: degF}
            dwpf: {variable: d2m, units: degF}
            sknt: {variable: ws10, units: kt}
            drct: {variable: wd10, units: degree}
            mslp: {variable: msl, units: hPa}
            alti: {variable: qnh, units: inHg}

Options are checked when the source is built (:class:`TableOptionError`, naming the option):
a variable that is not canonical, a unit Pint does not know or that does not convert to the
variable's canonical unit, two columns mapped to one variable, an unknown option. Converters
come from :func:`stratocast.vocab.units.to_canonical` (Pint, once per column).

Cells: ``missing`` tokens (default ``M`` and the empty cell, IEM's codes, and ``NaN``, pandas'
float missing value; in Parquet also a null) are missing; IEM's
``T`` (trace) is a number only in a column whose spec gives ``trace: <value>`` (a
precipitation column; no canonical variable is precipitation yet), elsewhere it is not
numeric. Every data row becomes exactly one Report or Rejection, with id ``file:line`` (CSV:
the physical line, header = line 1; Parquet: ``file:row`` counting data rows from 1):

* ``malformed_row``: a CSV row with more or fewer fields than the header;
* ``bad_time``: a time that does not parse (ISO 8601 by default, or ``time_format``: a
  :func:`~datetime.datetime.strptime` format, or ``epoch`` for seconds since 1970 UTC);
* ``bad_value``: a mapped cell that is neither a number nor a missing token (names the column);
* ``bad_position``: a position cell that does not parse or is out of range;
* ``unknown_station``: no position columns (or missing cells) and the station is in no
  catalogue (the one passed to ``read``, else the ``stations`` file option);
* ``no_data``: every mapped cell missing;
* ``non_finite``: a value that converts or derives to inf or NaN (names the variables);
* ``decode_error``: any other exception while decoding the row (its type and text), so one
  row's surprise never sinks the rest of the file (issue 12).

Blank lines carry no row. A CSV file ends with its :class:`TextTally` (the text accounting:
every character is in a row's raw text or in the header line, the framing); Parquet is binary
and has none. A file whose header lacks a configured column, or that is not CSV
or Parquet at all, raises :class:`SourceFileError`. Values outside the valid ranges are kept
(QC quarantines them). Derived variables (u10/v10, rh2m, q2m, msl from sp) come from
:func:`stratocast.obs.harmonise.derive`, but a variable the table reports itself is kept as
reported, never overwritten by a derivation. A derived rh2m above its valid maximum (dewpoint
above temperature) is flagged ``supersaturated``, as ISD-Lite does.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stratocast.errors import StratocastError
from stratocast.obs.base import Record, Rejection, Report, SourceFileError, TextTally, text_chars
from stratocast.obs.harmonise import derive
from stratocast.obs.lexicon import LexiconEntry
from stratocast.obs.stations import Station, StationCatalogue
from stratocast.vocab.units import Affine, UnitConversionError, converter
from stratocast.vocab.variables import VARIABLES

_RH_MAX = VARIABLES["rh2m"].valid_max


class TableOptionError(StratocastError, ValueError):
    """A ``table``/``cf_dsg`` source option that cannot work; the message names the option."""


# --- helpers shared with the cf_dsg source -------------------------------------------------


def finish_values(
    values: dict[str, float], elevation: float
) -> tuple[dict[str, float], dict[str, tuple[str, str]]]:
    """Add derived variables to reported ``values`` and return them with the decode flags.

    A reported variable is kept as reported (never replaced by its derivation), and a flag
    that :func:`derive` gives a *derived* value does not land on a reported one of that name.
    """
    reported = set(values)
    flags: dict[str, tuple[str, str]] = {}
    derived = derive(dict(values), flags, elevation=None if math.isnan(elevation) else elevation)
    for name, v in derived.items():
        values.setdefault(name, v)
    flags = {k: f for k, f in flags.items() if not (k in reported and f[0] == "derived")}
    rh = values.get("rh2m")
    if "rh2m" not in reported and rh is not None and rh > _RH_MAX:
        flags["rh2m"] = (
            "supersaturated",
            f"dewpoint {values['d2m']:.2f} K above temperature {values['t2m']:.2f} K gives "
            f"relative humidity {rh:.2f} > {_RH_MAX:g}",
        )
    return values, flags


def non_finite(values: Mapping[str, float]) -> str | None:
    """Why ``values`` cannot be stored (a value that is not a finite real number), or None.

    A finite cell can still convert or derive to inf or NaN (1e308 hPa in Pa, a dewpoint of
    1e30 K in the humidity formula); such a record is a Rejection, never a stored value.
    (The BUFR readers' twin lives in ``obs.bufr_file``, which imports ecCodes.)
    """
    bad = [k for k, v in values.items() if not (isinstance(v, float) and math.isfinite(v))]
    return f"non-finite value of {', '.join(bad)}" if bad else None


def position_problem(lat: float, lon: float, elevation: float) -> str | None:
    """Why a position cannot be stored (None when it can); longitudes up to 360 are fine."""
    if not -90.0 <= lat <= 90.0:
        return f"latitude {lat:g} outside [-90, 90]"
    if not -180.0 <= lon <= 360.0:
        return f"longitude {lon:g} outside [-180, 360]"
    if not (math.isnan(elevation) or -500.0 <= elevation <= 9000.0):
        return f"elevation {elevation:g} m outside [-500, 9000]"
    return None


def east(lon: float) -> float:
    """Longitude in [-180, 180] (0..360 conventions folded)."""
    return lon - 360.0 if lon > 180.0 else lon


def load_stations(path: str | Path) -> StationCatalogue:
    """A station file: NOAA ``isd-history.csv`` (USAF-WBAN ids) or a ``stations.csv``."""
    from stratocast.obs.isd_history import cached_isd_catalogue

    path = Path(path)
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            header = fh.readline()
    except OSError as err:
        raise SourceFileError(f"station list {path}: {err.strerror or err}") from None
    try:
        if '"USAF"' in header or header.startswith("USAF"):
            return cached_isd_catalogue(str(path))
        return StationCatalogue.from_csv(path)
    except ValueError as err:
        raise SourceFileError(f"station list {path}: {err}") from None


def lookup(station_id: str, *catalogues: StationCatalogue | None) -> Station | None:
    """The station by id, else by ICAO code, else by WMO number, in the first catalogue that has
    it (IEM ids are FAA ids or ICAO codes; WMO-numbered series use the 5-digit number)."""
    for cat in catalogues:
        if cat is None:
            continue
        found = cat.get(station_id) or cat.by_icao(station_id) or cat.by_wmo(station_id)
        if found is not None:
            return found
    return None


def unit_converter(option: str, unit: object, variable: str) -> Affine:
    """Pint converter from ``unit`` to ``variable``'s canonical unit, or an error naming
    ``option``."""
    if not isinstance(unit, str) or not unit.strip():
        raise TableOptionError(f"{option}: a unit string is required (e.g. 'degF', 'kt')")
    if variable not in VARIABLES:
        raise TableOptionError(
            f"{option}: {variable!r} is not a canonical variable "
            f"(some are: t2m, d2m, rh2m, ws10, wd10, u10, v10, msl, sp, qnh)"
        )
    try:
        return converter(unit, VARIABLES[variable].units)
    except UnitConversionError as err:
        raise TableOptionError(f"{option}: unit {unit!r} for {variable}: {err}") from None


# --- the table source ----------------------------------------------------------------------


_Row = tuple[str, list[str] | None, str | TextTally]


class _Column:
    __slots__ = ("convert", "name", "trace", "unit", "variable")

    def __init__(
        self, name: str, variable: str, unit: str, convert: Affine, trace: float | None
    ) -> None:
        self.name, self.variable, self.unit = name, variable, unit
        self.convert, self.trace = convert, trace


def _columns(spec: object) -> list[_Column]:
    if not isinstance(spec, Mapping) or not spec:
        raise TableOptionError(
            "options.columns: a mapping of column name -> {variable: <canonical>, units: <unit>}"
            " is required (e.g. tmpf: {variable: t2m, units: degF})"
        )
    out: list[_Column] = []
    seen: dict[str, str] = {}
    for name, entry in spec.items():
        where = f"options.columns.{name}"
        if not isinstance(entry, Mapping):
            raise TableOptionError(
                f"{where}: expected {{variable: ..., units: ...}}, got {entry!r}"
            )
        unknown = set(entry) - {"variable", "units", "trace"}
        if unknown:
            raise TableOptionError(f"{where}: unknown keys {sorted(unknown)}")
        variable = entry.get("variable")
        if not isinstance(variable, str) or variable not in VARIABLES:
            raise TableOptionError(
                f"{where}.variable: {variable!r} is not a canonical variable "
                "(see stratocast.vocab.variables: t2m, d2m, rh2m, ws10, wd10, msl, sp, qnh, ...)"
            )
        if variable in seen:
            raise TableOptionError(
                f"{where}.variable: {variable} is already the target of column {seen[variable]!r}"
            )
        seen[variable] = str(name)
        convert = unit_converter(f"{where}.units", entry.get("units"), variable)
        trace = entry.get("trace")
        if trace is not None and not isinstance(trace, int | float):
            raise TableOptionError(f"{where}.trace: a number (in the column's unit), not {trace!r}")
        out.append(_Column(str(name), variable, str(entry["units"]), convert, trace))
    return out


def _cell(v: object) -> str:
    """A Parquet value as the text a CSV export would hold (null and NaN: empty)."""
    if v is None or (isinstance(v, float) and v != v):
        return ""
    return v.isoformat() if isinstance(v, datetime) else str(v)


def _zone(name: str) -> tzinfo:
    if name.upper() in ("UTC", "Z", "GMT"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TableOptionError(
            f"options.timezone: unknown time zone {name!r} (an IANA name such as "
            "'America/Chicago', or UTC)"
        ) from None


class TableSource:
    """Source ``table``: station series in CSV or Parquet, mapped by the run config."""

    name = "table"

    def __init__(
        self,
        columns: Mapping[str, Mapping[str, Any]] | None = None,
        station: str = "station",
        time: str = "valid",
        time_format: str | None = None,
        timezone: str = "UTC",
        lat: str | None = None,
        lon: str | None = None,
        elevation: str | None = None,
        elevation_units: str = "m",
        missing: Sequence[str] = ("M", "", "NaN", "nan"),
        stations: str | None = None,
        format: str | None = None,  # "csv" | "parquet"; default from the suffix
        delimiter: str = ",",
    ) -> None:
        self._cols = _columns(columns)
        self.lexicon: dict[str, LexiconEntry] = {
            c.name: LexiconEntry(c.name, c.unit, c.variable) for c in self._cols
        }
        self.station, self.time, self.time_format = station, time, time_format
        self.zone = _zone(timezone)
        if (lat is None) != (lon is None):
            raise TableOptionError("options.lat/lon: give both position columns or neither")
        self.lat, self.lon, self.elevation = lat, lon, elevation
        try:
            self._elev = converter(elevation_units, "m")
        except UnitConversionError as err:
            raise TableOptionError(f"options.elevation_units: {err}") from None
        if isinstance(missing, str) or not all(isinstance(m, str) for m in missing):
            raise TableOptionError(f"options.missing: a list of strings, not {missing!r}")
        self.missing = frozenset(m.strip() for m in missing)
        self.stations = stations
        if format not in (None, "csv", "parquet"):
            raise TableOptionError(f"options.format: 'csv' or 'parquet', not {format!r}")
        self.format = format
        if len(delimiter) != 1:
            raise TableOptionError(f"options.delimiter: one character, not {delimiter!r}")
        self.delimiter = delimiter

    # -- reading ----------------------------------------------------------------------------

    def _rows(self, path: Path) -> tuple[list[str], Iterator[_Row]]:
        """(header, iterator of (location, cells or None if malformed, raw text)); a CSV's
        iterator ends with its TextTally in place of the raw text."""
        fmt = self.format or ("parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv")
        if fmt == "parquet":
            return self._parquet_rows(path)
        try:
            text = path.read_bytes().decode("utf-8-sig", "replace")
        except OSError as err:
            raise SourceFileError(f"cannot read {path}: {err.strerror or err}") from None
        # split on newlines only: str.splitlines also breaks at \x1c, \x85 ... and would lose
        # those characters from every row's raw text
        lines = [ln.removesuffix("\r") for ln in text.split("\n")]
        header_at = next((i for i, ln in enumerate(lines) if text_chars(ln)), None)
        if header_at is None:
            raise SourceFileError(f"{path}: empty file, no header row")
        header = [h.strip() for h in next(csv.reader([lines[header_at]], delimiter=self.delimiter))]
        name = path.name

        def rows() -> Iterator[_Row]:
            for i in range(header_at + 1, len(lines)):
                raw = lines[i]
                if not text_chars(raw):
                    continue
                try:
                    cells = next(csv.reader(io.StringIO(raw), delimiter=self.delimiter))
                except (csv.Error, StopIteration):
                    cells = []
                yield f"{name}:{i + 1}", cells if len(cells) == len(header) else None, raw
            # the text identity: every character is in a row's raw text or the header line
            yield "", None, TextTally(str(path), text_chars(text), text_chars(lines[header_at]))

        return header, rows()

    def _parquet_rows(self, path: Path) -> tuple[list[str], Iterator[_Row]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as err:
            raise SourceFileError(f"{path}: not a readable Parquet file: {err}") from None
        header = list(table.column_names)
        # each cell as text, so a Parquet table and its CSV export decode identically
        cols = [[_cell(v) for v in c] for c in table.to_pydict().values()]
        name = path.name

        def rows() -> Iterator[_Row]:
            for r in range(table.num_rows):
                cells = [c[r] for c in cols]
                raw = " ".join(f"{h}={v}" for h, v in zip(header, cells, strict=True))
                yield f"{name}:{r + 1}", cells, raw

        return header, rows()

    def _parse_time(self, text: str) -> datetime:
        text = text.strip()
        if self.time_format == "epoch":  # seconds since 1970-01-01 UTC (Unix time)
            return datetime.fromtimestamp(float(text), tz=UTC)
        if self.time_format is not None:
            t = datetime.strptime(text, self.time_format)
        else:
            t = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        if t.tzinfo is None:
            t = t.replace(tzinfo=self.zone)
        return t.astimezone(UTC)

    def _number(self, text: str) -> float | None:
        """A cell as a float; None when missing. Raises ValueError when not numeric."""
        text = text.strip()
        if text in self.missing:
            return None
        v = float(text)
        if not math.isfinite(v):
            raise ValueError(text)
        return v

    def read(self, path: Path, catalogue: StationCatalogue | None = None) -> Iterator[Record]:
        path = Path(path)
        header, rows = self._rows(path)
        index = {h: i for i, h in enumerate(header)}
        need = {"options.station": self.station, "options.time": self.time}
        for opt, col in (("lat", self.lat), ("lon", self.lon), ("elevation", self.elevation)):
            if col is not None:
                need[f"options.{opt}"] = col
        for c in self._cols:
            need[f"options.columns.{c.name}"] = c.name
        absent = {opt: col for opt, col in need.items() if col not in index}
        if absent:
            listed = ", ".join(f"{col!r} ({opt})" for opt, col in absent.items())
            raise SourceFileError(f"{path}: header lacks {listed}; it has {header}")
        own = load_stations(self.stations) if self.stations is not None else None
        i_st, i_t = index[self.station], index[self.time]
        mapped = [(index[c.name], c) for c in self._cols]
        pos = None if self.lat is None or self.lon is None else (index[self.lat], index[self.lon])
        i_el = None if self.elevation is None else index[self.elevation]

        for where, cells, raw in rows:
            if isinstance(raw, TextTally):
                yield raw
                continue
            try:
                yield self._row(
                    where, cells, raw, header, i_st, i_t, mapped, pos, i_el, catalogue, own
                )
            except Exception as err:  # one row's surprise must not sink the file (issue 12)
                station = None
                if cells is not None and i_st < len(cells):
                    station = cells[i_st].strip() or None
                why = f"{where}: decoding failed: {type(err).__name__}: {err}"
                yield Rejection(where, "decode_error", why, raw, station)

    def _row(
        self,
        where: str,
        cells: list[str] | None,
        raw: str,
        header: list[str],
        i_st: int,
        i_t: int,
        mapped: list[tuple[int, _Column]],
        pos: tuple[int, int] | None,
        i_el: int | None,
        catalogue: StationCatalogue | None,
        own: StationCatalogue | None,
    ) -> Record:
        """One data row as its Report or Rejection."""
        if cells is None:
            reason = f"{where}: not {len(header)} fields as in the header row"
            return Rejection(where, "malformed_row", reason, raw)
        station_id = cells[i_st].strip()
        if not station_id or station_id in self.missing:
            return Rejection(where, "unknown_station", f"{where}: no station id", raw)
        try:
            t = self._parse_time(cells[i_t])
        except (ValueError, OverflowError) as err:
            fmt = self.time_format or "ISO 8601"
            return Rejection(
                where,
                "bad_time",
                f"{where}: time {cells[i_t]!r} in column {self.time!r} is not {fmt} ({err})",
                raw,
                station_id,
            )
        values: dict[str, float] = {}
        for i, c in mapped:
            cell = cells[i].strip()
            try:
                v = self._number(cell)
            except ValueError:
                if c.trace is None or cell != "T":
                    bad = f"{where}: column {c.name!r} value {cell!r} is not a number"
                    return Rejection(where, "bad_value", bad, raw, station_id, t)
                v = c.trace
            if v is not None:
                values[c.variable] = float(c.convert(v))
        located = self._position(where, cells, pos, i_el, station_id, catalogue, own)
        if len(located) == 2:
            check, why = located
            return Rejection(where, check, f"{where}: {why}", raw, station_id, t)
        if not values:
            reason = f"{where}: every mapped column is missing"
            return Rejection(where, "no_data", reason, raw, station_id, t)
        lat, lon, elev = located
        values, flags = finish_values(values, elev)
        if (infinite := non_finite(values)) is not None:
            return Rejection(where, "non_finite", f"{where}: {infinite}", raw, station_id, t)
        return Report(where, station_id, lat, lon, elev, t, values, raw, flags)

    def _position(
        self,
        where: str,
        cells: list[str],
        pos: tuple[int, int] | None,
        i_el: int | None,
        station_id: str,
        catalogue: StationCatalogue | None,
        own: StationCatalogue | None,
    ) -> tuple[float, float, float] | tuple[str, str]:
        """(lat, lon, elevation) from the row or the catalogues, or (check, reason) why not."""
        lat = lon = elev = None
        try:
            if pos is not None:
                lat, lon = self._number(cells[pos[0]]), self._number(cells[pos[1]])
            if i_el is not None:
                e = self._number(cells[i_el])
                elev = None if e is None else float(self._elev(e))
        except ValueError:
            cols = [c for c in (self.lat, self.lon, self.elevation) if c is not None]
            return "bad_position", f"position columns {cols} do not all hold numbers"
        if lat is None or lon is None:
            found = lookup(station_id, catalogue, own)
            if found is None:
                how = "missing position cells and " if pos is not None else ""
                return (
                    "unknown_station",
                    f"station {station_id!r}: {how}not in the station catalogue",
                )
            lat, lon = found.lat, found.lon
            if elev is None:
                elev = found.elevation
        elif elev is None:  # no elevation cell or column: the catalogue's, if it has one
            found = lookup(station_id, catalogue, own)
            elev = None if found is None else found.elevation
        elevation = math.nan if elev is None else elev
        problem = position_problem(lat, lon, elevation)
        if problem is not None:
            return "bad_position", problem
        return lat, east(lon), elevation
