"""What every score shares: the common mask, axis handling and the accumulator protocol.

Every metric in ``stratocast.verify`` is a function of additive sums (counts, sums of errors,
contingency counts, ...). An accumulator holds those sums with the shape of the dimensions that
are *kept* (say ``[lead]`` or ``[lead, station]``); :meth:`update` adds a chunk reduced over the
other axes, :meth:`merge` adds another accumulator's sums, :meth:`result` turns sums into scores.
A year therefore streams through chunk by chunk, and partial results from workers or periods
merge exactly (up to floating-point summation order).

Missing values are NaN and are left out of every score (through the mask). An infinite value
is not a missing value but an overflow or a corrupt field: every accumulator refuses it with
:class:`NonFiniteError`, naming the argument, how many values are infinite and the index of
the first, rather than scoring around it (a blown-up forecast would then look better on a
smaller sample) or propagating it (``scores`` and WeatherBench2 return an infinite score,
with no word on where).
"""

from __future__ import annotations

from typing import Any, Protocol, Self, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

from stratocast.errors import StratocastError

Axis: TypeAlias = int | tuple[int, ...] | None
FloatArray: TypeAlias = NDArray[np.float64]


class Accumulator(Protocol):
    """Additive sums behind a score: update with chunks, merge partials, read the result."""

    def merge(self, other: Self) -> Self: ...

    def result(self) -> dict[str, FloatArray]: ...


def common_mask(*arrays: ArrayLike) -> NDArray[np.bool_]:
    """True where every array is finite (broadcast): the pairs all systems are scored on.

    A NaN in the observation or in *any* system removes the sample for every system, so the
    scores of different systems are computed on exactly the same (station, time) set.
    """
    if not arrays:  # internal: every caller passes the observations at least
        raise ValueError("common_mask needs at least one array")
    mask = np.ones((), dtype=bool)
    for values in arrays:
        mask = mask & np.isfinite(np.asarray(values, dtype=np.float64))
    return np.asarray(mask)


class MetricInputError(StratocastError, ValueError):
    """Scores asked of inputs or options that cannot give them (shapes, members, axes,
    thresholds, methods, a reference system): the message names the argument."""


class NonNumericError(MetricInputError, TypeError):
    """A score input that is not numeric (a TypeError, as NumPy's own would be)."""


class NonFiniteError(StratocastError, ValueError):
    """A score input holds ±inf (NaN, the missing-value marker, is accepted)."""


def check_no_inf(values: FloatArray, name: str, where: str = "") -> None:
    """Raise :class:`NonFiniteError` when ``values`` holds ±inf, naming the first index.

    ``where`` (e.g. "system 'A', t2m, init 2024-01-01 00:00, lead 24 h") prefixes the message.
    """
    inf = np.isinf(values)
    if not inf.any():
        return
    first = tuple(int(i) for i in np.argwhere(inf)[0])
    prefix = f"{where}: " if where else ""
    raise NonFiniteError(
        f"{prefix}{name} holds {int(inf.sum())} infinite value(s) of {values.size}, the first "
        f"({values[first]}) at index {first} of shape {values.shape}; NaN marks a missing "
        "value, an infinite one is refused"
    )


class _Rows(Protocol):
    """What :func:`check_rows_finite` needs of a DataFrame of observation rows."""

    def __getitem__(self, key: str) -> ArrayLike: ...

    @property
    def iloc(self) -> Any: ...


def check_rows_finite(rows: _Rows, variable: str, what: str) -> None:
    """Refuse observation rows (``station_id``, ``time``, ``value``) holding ±inf, naming the
    first by station and time: NaN is a missing observation, an infinite one a decoding or
    unit error upstream that must not be dropped as missing."""
    values = np.asarray(rows["value"], dtype=np.float64)
    inf = np.isinf(values)
    if not inf.any():
        return
    k = int(np.flatnonzero(inf)[0])
    row = rows.iloc[k]
    raise NonFiniteError(
        f"{what} of {variable}: {int(inf.sum())} infinite value(s) of {values.size}, the first "
        f"({values[k]}) at station {row['station_id']!r}, time {row['time']}; NaN marks a "
        "missing value, an infinite one is refused"
    )


def as_float(values: ArrayLike, name: str) -> FloatArray:
    """A float64 array; a clear error names the argument when it is not numeric."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise NonNumericError(f"{name} must be numeric: {exc}") from exc


def paired(
    forecast: ArrayLike, obs: ArrayLike, mask: ArrayLike | None = None
) -> tuple[FloatArray, FloatArray, NDArray[np.bool_]]:
    """Forecast and observation broadcast together, plus the mask of pairs that count.

    ``mask`` (e.g. from :func:`common_mask` over all systems) is combined with the pair's
    own finiteness, so a caller can never score a pair with a NaN in it; ±inf in either
    is refused (:class:`NonFiniteError`).
    """
    f = as_float(forecast, "forecast")
    o = as_float(obs, "obs")
    check_no_inf(f, "forecast")
    check_no_inf(o, "obs")
    try:
        f, o = np.broadcast_arrays(f, o)
    except ValueError as exc:
        raise MetricInputError(f"forecast {f.shape} and obs {o.shape} do not broadcast") from exc
    valid = np.isfinite(f) & np.isfinite(o)
    if mask is not None:
        valid = valid & np.broadcast_to(np.asarray(mask, dtype=bool), valid.shape)
    return f, o, valid


def kept_shape(shape: tuple[int, ...], axis: Axis) -> tuple[int, ...]:
    """The shape left after reducing ``axis`` (None: every axis)."""
    if axis is None:
        return ()
    axes = (axis,) if isinstance(axis, int) else axis
    ndim = len(shape)
    norm = {a + ndim if a < 0 else a for a in axes}
    if any(a < 0 or a >= ndim for a in norm):
        raise MetricInputError(f"axis {axis} out of range for an array of shape {shape}")
    return tuple(n for i, n in enumerate(shape) if i not in norm)


def check_shape(expected: tuple[int, ...], data_shape: tuple[int, ...], axis: Axis) -> None:
    """Raise when a chunk reduced over ``axis`` does not land on the accumulator's shape."""
    got = kept_shape(data_shape, axis)
    if got != expected:
        raise MetricInputError(
            f"chunk of shape {data_shape} reduced over axis {axis} gives {got}, "
            f"but the accumulator keeps {expected}"
        )


def masked_sum(values: FloatArray, valid: NDArray[np.bool_], axis: Axis) -> FloatArray:
    """Sum of ``values`` where ``valid`` (NaN elsewhere never leaks into the sum)."""
    return np.asarray(np.where(valid, values, 0.0).sum(axis=axis), dtype=np.float64)


def safe_ratio(num: ArrayLike, den: ArrayLike) -> FloatArray:
    """num/den, NaN where den is 0 (no samples: no score rather than a warning or inf)."""
    n = np.asarray(num, dtype=np.float64)
    d = np.asarray(den, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(d != 0, n / np.where(d != 0, d, 1.0), np.nan))


def check_same(kind: str, a: object, b: object) -> None:
    """Raise when two accumulators to merge were built differently."""
    if a != b:
        raise MetricInputError(f"cannot merge accumulators with different {kind}: {a} != {b}")
