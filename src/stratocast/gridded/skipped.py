"""Fields a file holds that did not become canonical variables, each with its reason.

Every open reports them: in the Dataset's ``skipped_fields`` attribute (one ``field: reason
(where)`` line each; a plain string so the Dataset still writes to NetCDF and Zarr), in the
log, and — when nothing at all opens — in the :class:`GriddedFileError` itself. A field the
lexicon *recognised* but could not take (units, level, an unselected dataType or step) is
logged as a warning, because it usually means a wrong argument or a broken file; a field the
lexicon does not name (a GFS file holds ~300, we use the pressure levels and a handful more)
is logged at info level.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import xarray as xr

from stratocast.gridded.errors import GriddedFileError

log = logging.getLogger("stratocast.gridded")

ATTR = "skipped_fields"


@dataclass(frozen=True)
class Skipped:
    field: str  # "absv@isobaricInhPa:500", "vo@250hPa", "t2m_C"
    reason: str
    where: str  # "message 12 at byte offset 3456", "variable 'vo'"
    recognised: bool = False  # the lexicon named it: a warning, not a note


@dataclass
class SkipLog:
    """Collects the skipped fields of one file, in file order."""

    path: Path
    items: list[Skipped] = field(default_factory=list)

    def add(self, name: str, reason: str, where: str, *, recognised: bool = False) -> None:
        self.items.append(Skipped(name, reason, where, recognised))

    def lines(self) -> list[str]:
        """One line per (field, reason), the places merged: a field repeated over 70 time
        steps for the same reason is one line, not 70."""
        places: dict[tuple[str, str], list[str]] = defaultdict(list)
        for s in self.items:
            places[(s.field, s.reason)].append(s.where)
        out = []
        for (name, reason), where in places.items():
            at = where[0] if len(where) == 1 else f"{where[0]} and {len(where) - 1} more"
            out.append(f"{name}: {reason} ({at})")
        return out

    def report(self, ds: xr.Dataset) -> xr.Dataset:
        """Attach the list to ``ds`` and log it; ``ds`` is returned for chaining."""
        if not self.items:
            return ds
        lines = self.lines()
        ds.attrs[ATTR] = "\n".join(lines)
        loud = [s for s in self.items if s.recognised]
        if loud:
            log.warning(
                "%s: %d recognised field(s) not taken: %s",
                self.path,
                len(loud),
                "; ".join(f"{s.field}: {s.reason} ({s.where})" for s in loud[:10])
                + (" ..." if len(loud) > 10 else ""),
            )
        log.info("%s: kept out %d field(s):\n  %s", self.path, len(lines), "\n  ".join(lines))
        return ds

    def nothing_opened(self, kind: str) -> GriddedFileError:
        """The error for an open that yields no field: what the file had, why each went."""
        lines = self.lines() or ["(no data variable or message at all)"]
        return GriddedFileError(
            self.path,
            f"no canonical field in this {kind} file; what it holds and why each was "
            "skipped:\n  " + "\n  ".join(lines),
        )

    def not_found(self, kind: str, missing: list[str], found: list[str]) -> GriddedFileError:
        """The error for requested variables the file does not give."""
        offered = {s.field for s in self.items if s.reason.startswith("not requested")}
        have = sorted({*found, *offered})
        unused = [line for line in self.lines() if ": not requested" not in line]
        return GriddedFileError(
            self.path,
            f"requested variable(s) {', '.join(missing)} not in this {kind} file; it gives "
            f"{', '.join(have) or 'none'}"
            + ("; skipped:\n  " + "\n  ".join(unused) if unused else ""),
        )


def skipped_fields(ds: xr.Dataset) -> list[str]:
    """The ``field: reason (where)`` lines :func:`open_gridded` attached to ``ds``."""
    text = ds.attrs.get(ATTR, "")
    return str(text).splitlines() if text else []
