"""The one-pass normalisation kernel: bit-identical to NumPy's (x - mean) / std."""

from __future__ import annotations

import numpy as np
import pytest

from stratocast.shards import affine
from stratocast.shards.affine import apply_affine, finite_or_zero, kernel_enabled


def _values(shape: tuple[int, ...], dtype: type, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.normal(0.0, 1.0, shape) * rng.choice([1e-3, 1.0, 300.0, 1e5], shape)).astype(dtype)
    flat = x.reshape(-1)
    # Special values must come out exactly as NumPy's: NaN, infinities, subnormals, zeros.
    flat[:6] = [np.nan, np.inf, -np.inf, np.finfo(dtype).smallest_subnormal, -0.0, 0.0]
    return x


def _stats(channels: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    mean = np.linspace(-250.0, 1.0e5, channels).astype(dtype)[:, None, None]
    std = np.linspace(0.3, 900.0, channels).astype(dtype)[:, None, None]
    return mean, std


def _broadcast(a: np.ndarray, step: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(a, step)


def _no_numpy_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("the NumPy fallback ran where the kernel should have")

    monkeypatch.setattr(affine, "_apply_numpy", refuse)


def test_kernel_is_available() -> None:
    # numba is a declared dependency: a silent fallback here would be a performance bug.
    assert kernel_enabled()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("in_place", [False, True])
def test_kernel_matches_numpy_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch, dtype: type, in_place: bool
) -> None:
    src = _values((3, 5, 17, 33), dtype)
    mean, std = _stats(5, dtype)
    want = (src - mean) / std
    step = src.shape[1:]
    _no_numpy_fallback(monkeypatch)
    dst = src.copy() if in_place else np.full_like(src, 7.0)
    apply_affine(None if in_place else src, dst, (_broadcast(mean, step), _broadcast(std, step)))
    np.testing.assert_array_equal(dst.view(f"u{dst.itemsize}"), want.view(f"u{want.itemsize}"))


def test_kernel_writes_only_its_tile_of_a_strided_destination(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A region tile / channel group: dst is a non-contiguous view of the batch buffer."""
    out = np.full((2, 6, 20, 40), -1.0, np.float32)
    src = _values((2, 3, 8, 16), np.float32, seed=1)
    mean, std = _stats(6, np.float32)
    tile = (slice(None), slice(2, 5), slice(4, 12), slice(16, 32))
    dst = out[tile]
    assert not dst.flags.c_contiguous
    step = out.shape[1:]
    aff = (_broadcast(mean, step)[tile[1:]], _broadcast(std, step)[tile[1:]])
    _no_numpy_fallback(monkeypatch)
    apply_affine(src, dst, aff)
    want = (src - mean[2:5]) / std[2:5]
    np.testing.assert_array_equal(out[tile].view(np.uint32), want.view(np.uint32))
    rest = np.ones(out.shape, bool)
    rest[tile] = False
    assert np.all(out[rest] == -1.0)  # nothing outside the tile touched


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_other_shapes_take_the_numpy_path_with_the_same_result() -> None:
    # Per-element statistics: neither per channel nor per variable on the last axis.
    src = _values((2, 3, 4, 5), np.float32)
    mean = _values((3, 4, 5), np.float32, seed=2)
    std = np.abs(_values((3, 4, 5), np.float32, seed=3)) + 1.0
    dst = np.empty_like(src)
    apply_affine(src, dst, (mean, std))
    np.testing.assert_array_equal(dst.view(np.uint32), ((src - mean) / std).view(np.uint32))
    # Per-variable statistics, but a strided destination: NumPy path.
    obs = _values((4, 7, 6), np.float32)[..., ::2]
    omean = np.array([280.0, 1.0e5, 3.0], np.float32)
    ostd = np.array([9.0, 800.0, 2.0], np.float32)
    dst = np.empty((4, 7, 6), np.float32)[..., ::2]
    step = obs.shape[1:]
    apply_affine(obs, dst, (_broadcast(omean, step), _broadcast(ostd, step)))
    np.testing.assert_array_equal(dst.view(np.uint32), ((obs - omean) / ostd).view(np.uint32))


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("n_var", [1, 3, 8, 1500])  # 1500: longer than the tiled statistics
def test_observation_kernel_stats_on_the_last_axis(
    monkeypatch: pytest.MonkeyPatch, in_place: bool, n_var: int
) -> None:
    """Observation arrays (time, slot, variable): statistics vary along the last axis."""
    obs = _values((3, 411, n_var), np.float32, seed=n_var)
    omean = np.linspace(-40.0, 1.0e5, n_var).astype(np.float32)
    ostd = np.linspace(0.5, 800.0, n_var).astype(np.float32)
    step = obs.shape[1:]
    _no_numpy_fallback(monkeypatch)
    dst = obs.copy() if in_place else np.full_like(obs, 7.0)
    apply_affine(None if in_place else obs, dst, (_broadcast(omean, step), _broadcast(ostd, step)))
    np.testing.assert_array_equal(dst.view(np.uint32), ((obs - omean) / ostd).view(np.uint32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_or_zero_matches_numpy(dtype: type) -> None:
    values = _values((2, 50, 7), dtype)
    values.reshape(-1)[10:20] = np.nan
    mask = np.full(values.shape, 5.0, np.float32)
    want_ok = np.isfinite(values)
    want = np.where(want_ok, values, 0).astype(dtype)
    finite_or_zero(values, mask)
    np.testing.assert_array_equal(mask, want_ok.astype(np.float32))
    bits = f"u{values.itemsize}"
    np.testing.assert_array_equal(values.view(bits), want.view(bits))
    assert mask.sum() == want_ok.sum() < mask.size  # some were masked


@pytest.mark.parametrize("shift", range(8))
def test_streaming_stores_at_any_alignment(monkeypatch: pytest.MonkeyPatch, shift: int) -> None:
    """The vector loop needs dst 32-byte aligned: the elements before that and the tail are
    scalar; whatever the start address, every element is written, and nothing beyond."""
    shape = (2, 3, 7, 45)
    n = int(np.prod(shape))
    backing = np.full(n + 16, -9.0, np.float32)
    dst = backing[shift : shift + n].reshape(shape)
    src = _values(shape, np.float32, seed=shift)
    mean, std = _stats(3, np.float32)
    step = shape[1:]
    _no_numpy_fallback(monkeypatch)
    apply_affine(src, dst, (_broadcast(mean, step), _broadcast(std, step)))
    np.testing.assert_array_equal(dst.view(np.uint32), ((src - mean) / std).view(np.uint32))
    assert np.all(backing[:shift] == -9.0) and np.all(backing[shift + n :] == -9.0)


def test_strided_rows_use_the_plain_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    src = _values((2, 4, 6, 20), np.float64)[..., ::2]  # every other column: not contiguous
    dst = np.empty(src.shape, np.float64)
    mean, std = _stats(4, np.float64)
    _no_numpy_fallback(monkeypatch)
    apply_affine(src, dst, (_broadcast(mean, src.shape[1:]), _broadcast(std, src.shape[1:])))
    np.testing.assert_array_equal(dst.view(np.uint64), ((src - mean) / std).view(np.uint64))


def _fresh_kernel_state(monkeypatch: pytest.MonkeyPatch) -> None:
    # monkeypatch restores the module's loaded kernels after the test
    monkeypatch.setattr(affine, "_kernel_state", "untried")
    monkeypatch.setattr(affine, "_kernel", None)


def test_jit_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    _fresh_kernel_state(monkeypatch)
    monkeypatch.setenv("STRATOCAST_JIT", "0")
    assert not kernel_enabled()
    src = _values((2, 3, 4, 9), np.float32)
    mean, std = _stats(3, np.float32)
    dst = np.empty_like(src)
    apply_affine(src, dst, (_broadcast(mean, src.shape[1:]), _broadcast(std, src.shape[1:])))
    np.testing.assert_array_equal(dst.view(np.uint32), ((src - mean) / std).view(np.uint32))


def test_a_kernel_that_fails_its_check_falls_back_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fresh_kernel_state(monkeypatch)

    def wrong(src: np.ndarray, dst: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> None:
        np.copyto(dst, src)  # "miscompiled": forgets to normalise

    def inplace(dst: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> None:
        pass

    def finite(values: np.ndarray, mask: np.ndarray) -> None:
        mask[...] = 1.0

    fake = affine._Kernels(wrong, inplace, wrong, inplace, finite)
    monkeypatch.setattr(affine, "_compile", lambda: affine._self_check(fake))
    with pytest.warns(RuntimeWarning, match="kernels unavailable.*differs from NumPy"):
        assert not kernel_enabled()
    src = _values((1, 3, 4, 9), np.float32)
    mean, std = _stats(3, np.float32)
    dst = np.empty_like(src)
    apply_affine(src, dst, (_broadcast(mean, src.shape[1:]), _broadcast(std, src.shape[1:])))
    np.testing.assert_array_equal(dst.view(np.uint32), ((src - mean) / std).view(np.uint32))
