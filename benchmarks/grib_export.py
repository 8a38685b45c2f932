"""GRIB2 export rate: stratocast's Grib2Writer against earthkit-data's GRIB encoder (the
maintained baseline) on the same fields, in the same run.

Fields: 6 channels (t2m u10 v10 msl z500 t850) × 41 leads (0..240 h every 6 h) × one init, on
each grid asked for (default 32×64 and 181×360, global). Both encoders get the same per-variable
template (every static key set: parameter, level, grid, packing at 16 bits) and then set what
changes per field: earthkit ``FileTarget.write(values=..., template=..., metadata={date, time,
step})``, ours ``Grib2Writer.write``. Rounds alternate (ours, baseline, ours, ...) so drift in the
machine's load hits both; the medians are compared, and both files are decoded with ecCodes to
check every value is identical.

    .venv/bin/python benchmarks/grib_export.py --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import eccodes
import numpy as np
import xarray as xr

from stratocast.infer.writers.base import field_array
from stratocast.infer.writers.grib2_writer import Grib2Writer
from stratocast.testing.writers import CHANNELS, synthetic_forecast


def dataset(ny: int, nx: int, n_lead: int) -> xr.Dataset:
    lat = np.linspace(90.0, -90.0, ny)
    lon = np.arange(nx) * (360.0 / nx)
    return synthetic_forecast(n_init=1, n_lead=n_lead, lat=lat, lon=lon, channels=CHANNELS)


def write_earthkit(ds: xr.Dataset, path: Path) -> None:
    import earthkit.data as ekd

    writer = Grib2Writer()
    grid = writer._grid_template(ds, path)
    t0 = np.datetime64(ds["init_time"].values[0], "m").astype(object)
    date, hhmm = int(t0.strftime("%Y%m%d")), t0.hour * 100 + t0.minute
    target = ekd.create_target("file", str(path))
    try:
        for name in CHANNELS:
            h = writer._field_template(grid, path, name, None, 0)
            template = eccodes.codes_get_message(h)
            eccodes.codes_release(h)
            cube = field_array(ds, name).values
            for j, lead in enumerate(ds["lead_time"].values):
                target.write(
                    values=np.asarray(cube[0, 0, j], dtype=np.float64),
                    template=template,
                    metadata={"dataDate": date, "dataTime": hhmm, "forecastTime": int(lead)},
                )
    finally:
        target.close()
        eccodes.codes_release(grid)


def decode(path: Path) -> list[np.ndarray]:
    out = []
    with path.open("rb") as fh:
        while (h := eccodes.codes_grib_new_from_file(fh)) is not None:
            out.append(np.asarray(eccodes.codes_get_values(h)))
            eccodes.codes_release(h)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--leads", type=int, default=41)
    ap.add_argument("--grids", default="32x64,181x360", help="NYxNX,NYxNX...")
    args = ap.parse_args()
    ours = Grib2Writer()
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.grids.split(","):
            ny, nx = (int(v) for v in spec.split("x"))
            ds = dataset(ny, nx, args.leads).load()
            n = len(CHANNELS) * args.leads
            a, b = Path(tmp) / "ours.grib2", Path(tmp) / "earthkit.grib2"
            times: dict[str, list[float]] = {"ours": [], "earthkit": []}
            for _ in range(args.rounds):
                for who, fn in (("ours", ours.write), ("earthkit", write_earthkit)):
                    t = time.perf_counter()
                    fn(ds, a if who == "ours" else b)
                    times[who].append(time.perf_counter() - t)
            va, vb = decode(a), decode(b)
            same = len(va) == len(vb) == n and all(
                np.array_equal(x, y) for x, y in zip(va, vb, strict=True)
            )
            med = {k: statistics.median(v) for k, v in times.items()}
            rate = {k: n / v for k, v in med.items()}
            print(
                f"grid {ny}x{nx}: {n} fields, {args.rounds} rounds | ours median "
                f"{med['ours'] * 1e3:.0f} ms ({rate['ours']:.0f} fields/s) | earthkit-data "
                f"median {med['earthkit'] * 1e3:.0f} ms ({rate['earthkit']:.0f} fields/s) | "
                f"ratio {rate['ours'] / rate['earthkit']:.2f}x | decoded values identical: {same}"
            )
            if not same:
                raise SystemExit("the two encoders decode to different values")


if __name__ == "__main__":
    main()
