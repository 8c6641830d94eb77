"""Wavelength grids and the preprocessing that puts any spectrum onto one.

A grid is a uniform wavelength axis (Angstrom) of ``n_native`` pixels, zero-padded on both
sides to a multiple of a power of two so that the network's stride-2 layers divide it
exactly. The grid also carries a base mask (0 on the padding and on detector gaps) and the
resolving power of the instrument it describes (used by the synthetic survey).

Preprocessing (``prepare``), following Sedaghat et al. 2021 section 2, method.md section 2:

1. Resample onto the grid. When the input already lies on the grid (same step, pixel
   centres aligned to 1e-3 pixel) the pixels are copied exactly. Otherwise the grid is
   coarser or finer than the input: when it is at least 1.5 times coarser we average
   the input over each grid pixel (flux-conserving, by differencing the interpolated
   cumulative integral, so narrow lines are not aliased); otherwise we interpolate
   linearly. Grid pixels outside the input's coverage, or touching a non-finite input
   pixel, become NaN.
2. The per-spectrum mask is the grid mask times "finite and covered".
3. The flux is divided by its median over unmasked pixels (the masked median: padding
   zeros and gaps never enter it). Masked pixels are set to 0.
4. A spectrum is degenerate, and left out with the reason recorded, when it cannot carry
   information whatever its units: its masked median or mean is <= 0 (all-zero,
   all-negative, over-subtracted sky), its flux is constant, it covers less than
   ``min_coverage`` of the grid, or its own signal-to-noise estimate (``estimate_snr``,
   DER_SNR, on the input pixels inside the grid) is below ``min_snr`` (default 5). Every
   test is a ratio or a sign, so raw counts (ADU), normalised (median ~1) and
   flux-calibrated (~1e-16 erg/s/cm2/A) spectra are judged alike. The paper's absolute
   cut, median <= 50 ADU for HARPS raw counts, is an option (``min_median``, off by
   default) because it means nothing in other units.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from specray.errors import InputError, SpecrayError

SPEED_OF_LIGHT_KMS = 299_792.458
"""Speed of light in km/s."""

# Padded indices 159453-162893 of the published grid (method.md section 2): the run of
# zeros between the two HARPS CCDs, in Angstrom, with half a pixel of slack each side.
HARPS_CCD_GAP_A = (5303.635, 5338.045)

MAX_GRID_PIXELS = 2**24
"""Most native pixels a grid may have (16.8 M; the HARPS grid has 312,501): a typo'd
step must fail here, not later as an out-of-memory crash."""

GRID_NAMES = "harps, demo or linear:START:STOP:STEP[:R] (Angstrom)"


class GridError(SpecrayError, ValueError):
    """A grid that cannot exist: the message names the grid and what is wrong."""


@dataclass(frozen=True)
class Grid:
    """A uniform wavelength grid, zero-padded to a multiple of ``pad_multiple`` pixels.

    Attributes:
        name: how the grid was asked for (``harps``, ``demo``, ``linear:...``).
        start: wavelength of the first native pixel, Angstrom.
        step: pixel width, Angstrom.
        n_native: number of pixels with data (before padding).
        pad_multiple: the padded length is the smallest multiple of this (a power of two).
        resolving_power: lambda / FWHM of the instrument the grid describes.
        gaps: wavelength ranges (Angstrom, inclusive) masked out, e.g. detector gaps.
    """

    name: str
    start: float
    step: float
    n_native: int
    pad_multiple: int
    resolving_power: float
    gaps: tuple[tuple[float, float], ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.step > 0 or self.n_native < 2:
            raise GridError(f"grid {self.name!r}: need step > 0 and at least 2 pixels")
        if self.pad_multiple < 1 or self.pad_multiple & (self.pad_multiple - 1):
            raise GridError(
                f"grid {self.name!r}: pad_multiple must be a power of two, got {self.pad_multiple}"
            )

    @property
    def length(self) -> int:
        """Padded length in pixels: what the network sees."""
        return math.ceil(self.n_native / self.pad_multiple) * self.pad_multiple

    @property
    def pad_left(self) -> int:
        return (self.length - self.n_native) // 2

    @property
    def pad_right(self) -> int:
        return self.length - self.n_native - self.pad_left

    @property
    def stop(self) -> float:
        """Wavelength of the last native pixel, Angstrom."""
        return self.start + (self.n_native - 1) * self.step

    @property
    def native_wavelength(self) -> np.ndarray:
        """Wavelength of each native pixel, Angstrom (float64)."""
        return self.start + self.step * np.arange(self.n_native, dtype=np.float64)

    @property
    def wavelength(self) -> np.ndarray:
        """Wavelength of every padded pixel, Angstrom; the padding extends the axis."""
        index = np.arange(self.length, dtype=np.float64) - self.pad_left
        return self.start + self.step * index

    @property
    def mask(self) -> np.ndarray:
        """uint8 of the padded length: 1 where a pixel can hold data, 0 on padding and gaps."""
        mask = np.zeros(self.length, dtype=np.uint8)
        mask[self.pad_left : self.pad_left + self.n_native] = 1
        wavelength = self.wavelength
        for low, high in self.gaps:
            mask[(wavelength >= low) & (wavelength <= high)] = 0
        return mask

    def pad(self, native: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Place a native-length array into the padded layout."""
        padded = np.full(self.length, fill, dtype=native.dtype)
        padded[self.pad_left : self.pad_left + self.n_native] = native
        return padded

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> Grid:
        values = json.loads(text)
        values["gaps"] = tuple(tuple(gap) for gap in values.get("gaps", ()))
        return cls(**values)


def _uniform_grid(
    name: str,
    start: float,
    stop: float,
    step: float,
    pad_multiple: int,
    resolving_power: float | None = None,
    gaps: tuple[tuple[float, float], ...] = (),
) -> Grid:
    _check_axis(name, start, stop, step)
    n_native = int(round((stop - start) / step)) + 1
    if resolving_power is None:
        # Nyquist-ish default: a resolution element of 2.5 pixels at the centre.
        resolving_power = 0.5 * (start + stop) / (2.5 * step)
    if not (math.isfinite(resolving_power) and resolving_power > 0):
        raise GridError(f"grid {name!r}: resolving power R must be > 0, got {resolving_power}")
    return Grid(name, start, step, n_native, pad_multiple, resolving_power, gaps)


def _check_axis(name: str, start: float, stop: float, step: float) -> None:
    """Raise GridError unless START < STOP and 0 < STEP (Angstrom) give a sane pixel count."""
    if not all(math.isfinite(value) for value in (start, stop, step)):
        raise GridError(f"grid {name!r}: START, STOP and STEP must be finite numbers")
    if start <= 0:
        raise GridError(f"grid {name!r}: START must be a wavelength > 0 A, got {start:g}")
    if stop <= start:
        raise GridError(f"grid {name!r}: STOP {stop:g} must exceed START {start:g}")
    if step <= 0:
        raise GridError(f"grid {name!r}: STEP must be > 0 A, got {step:g}")
    pixels = (stop - start) / step + 1
    if pixels > MAX_GRID_PIXELS:
        raise GridError(
            f"grid {name!r}: {pixels:.3g} pixels; at most {MAX_GRID_PIXELS:,} (is STEP too small?)"
        )


def named_grid(spec: str, pad_multiple: int | None = None) -> Grid:
    """Return the grid for a name.

    ``harps``: 3785-6910 A at 0.01 A, padded to 327,680 pixels (the published grid),
    resolving power 115,000, CCD gap masked. ``demo``: 4800-6750 A at 0.12 A (16,251
    pixels, padded to 16,384), resolving power 20,000, covering H-beta, Mg b, Na D and
    H-alpha, small enough to train on a laptop CPU. ``linear:START:STOP:STEP[:R]``:
    any uniform grid in Angstrom, R defaulting to 2.5 pixels per resolution element.
    ``pad_multiple`` (a power of two) overrides the grid's default padding multiple
    (2**14 for harps, 2**10 otherwise).
    """
    if spec == "harps":
        return _uniform_grid(
            "harps", 3785.0, 6910.0, 0.01, pad_multiple or 2**14, 115_000.0, (HARPS_CCD_GAP_A,)
        )
    if spec == "demo":
        return _uniform_grid("demo", 4800.0, 6750.0, 0.12, pad_multiple or 2**10, 20_000.0)
    if spec.startswith("linear:"):
        parts = spec.split(":")[1:]
        if len(parts) not in (3, 4):
            raise GridError(f"grid {spec!r}: expected linear:START:STOP:STEP[:R] in Angstrom")
        try:
            numbers = [float(part) for part in parts]
        except ValueError:
            raise GridError(f"grid {spec!r}: START, STOP, STEP (and R) must be numbers") from None
        resolving_power = numbers[3] if len(numbers) == 4 else None
        return _uniform_grid(spec, *numbers[:3], pad_multiple or 2**10, resolving_power)
    raise GridError(f"unknown grid {spec!r}: use {GRID_NAMES}")


class DegenerateSpectrum(SpecrayError, ValueError):
    """A spectrum that cannot be used; the message is the reason that gets recorded."""


@dataclass(frozen=True)
class PreparedSpectrum:
    """A spectrum on a grid: normalised flux, its mask, and the normalisation factor.

    ``flux`` (float32, padded length) is dimensionless (divided by ``median``); ``mask``
    is uint8 (1 = use the pixel); ``median`` and ``mean`` are in the input's units
    (ADU for HARPS), over unmasked pixels.
    """

    flux: np.ndarray
    mask: np.ndarray
    median: float
    mean: float


def _on_grid(wavelength: np.ndarray, grid: Grid) -> bool:
    if len(wavelength) < 2:
        return False
    step = (wavelength[-1] - wavelength[0]) / (len(wavelength) - 1)
    if abs(step - grid.step) > 1e-6 * grid.step:
        return False
    offset = (wavelength[0] - grid.start) / grid.step
    return abs(offset - round(offset)) < 1e-3


def _copy_onto_grid(wavelength: np.ndarray, flux: np.ndarray, grid: Grid) -> np.ndarray:
    first = int(round((wavelength[0] - grid.start) / grid.step))
    out = np.full(grid.n_native, np.nan)
    lo, hi = max(first, 0), min(first + len(flux), grid.n_native)
    if lo < hi:
        out[lo:hi] = flux[lo - first : hi - first]
    return out


def _pixel_edges(centres: np.ndarray) -> np.ndarray:
    mid = 0.5 * (centres[1:] + centres[:-1])
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


def _rebin_average(wavelength: np.ndarray, flux: np.ndarray, grid: Grid) -> np.ndarray:
    """Mean flux of the input over each grid pixel (flux-conserving), NaN where undefined."""
    bad = ~np.isfinite(flux)
    in_edges = _pixel_edges(wavelength)
    widths = np.diff(in_edges)
    cumulative = np.concatenate([[0.0], np.cumsum(np.where(bad, 0.0, flux) * widths)])
    cumulative_bad = np.concatenate([[0.0], np.cumsum(bad * widths)])
    out_edges = _pixel_edges(grid.native_wavelength)
    integral = np.diff(np.interp(out_edges, in_edges, cumulative))
    touched_bad = np.diff(np.interp(out_edges, in_edges, cumulative_bad)) > 0
    outside = (out_edges[:-1] < in_edges[0]) | (out_edges[1:] > in_edges[-1])
    result = integral / np.diff(out_edges)
    result[touched_bad | outside] = np.nan
    return result


def _interpolate(wavelength: np.ndarray, flux: np.ndarray, grid: Grid) -> np.ndarray:
    bad = ~np.isfinite(flux)
    target = grid.native_wavelength
    result = np.interp(target, wavelength, np.where(bad, 0.0, flux))
    touched_bad = np.interp(target, wavelength, bad.astype(np.float64)) > 0
    outside = (target < wavelength[0]) | (target > wavelength[-1])
    result[touched_bad | outside] = np.nan
    return result


def resample(wavelength: np.ndarray, flux: np.ndarray, grid: Grid) -> np.ndarray:
    """Flux on the grid's native pixels (float64), NaN where the input has no data.

    ``wavelength`` (Angstrom) must increase strictly; see the module docstring for the
    choice between exact copy, flux-conserving averaging and linear interpolation.
    """
    wavelength = np.asarray(wavelength, dtype=np.float64)
    flux = np.asarray(flux, dtype=np.float64)
    if wavelength.shape != flux.shape or wavelength.ndim != 1:
        raise InputError("wavelength and flux must be 1-D arrays of the same length")
    if _on_grid(wavelength, grid):
        return _copy_onto_grid(wavelength, flux, grid)
    if not np.all(np.diff(wavelength) > 0):
        raise InputError("wavelength must increase strictly")
    input_step = (wavelength[-1] - wavelength[0]) / (len(wavelength) - 1)
    if grid.step >= 1.5 * input_step:
        return _rebin_average(wavelength, flux, grid)
    return _interpolate(wavelength, flux, grid)


DEFAULT_MIN_SNR = 5.0
"""Default cut on the DER_SNR estimate: below 5 per pixel a spectrum is mostly noise.
Measured (2026-12-01, ``estimate_snr`` on ``generate(200, 4, named_grid("demo"), 7)``):
the 850 good synthetic spectra estimate 9.6-244 (median 26), the ``low_flux`` defects
1.7-2.9; the two HARPS test files 25.5 and 25.7 against header SNR 23.4 and 23.9."""

DER_SNR_SCALE = 1.482602 / math.sqrt(6.0)
"""Noise per pixel from the median of |2 f_i - f_(i-2) - f_(i+2)| for Gaussian noise
(Stoehr et al. 2008, ASP Conf. Ser. 394, 505)."""


def estimate_snr(flux: np.ndarray) -> float:
    """Median signal-to-noise per pixel of a spectrum from its own pixels (DER_SNR).

    ``flux`` holds the input's pixels in wavelength order, in any unit: the result is a
    ratio. Non-finite and exactly-zero pixels (gaps) are left out. Differences two
    pixels apart cancel a line profile sampled by a few pixels, so the estimate is the
    noise's, not the lines'; for undersampled lines it errs low. Infinite for a spectrum
    without noise, NaN with fewer than 5 usable pixels.
    """
    values = np.asarray(flux, dtype=np.float64)
    values = values[np.isfinite(values) & (values != 0)]
    if values.size < 5:
        return math.nan
    second = np.abs(2.0 * values[2:-2] - values[:-4] - values[4:])
    noise = DER_SNR_SCALE * float(np.median(second))
    signal = float(np.median(values))
    return math.inf if noise == 0 else signal / noise


def _check_flux(values: np.ndarray, min_median: float | None) -> tuple[float, float]:
    """Masked median and mean (input units); DegenerateSpectrum if they carry nothing."""
    median, mean = float(np.median(values)), float(np.mean(values))
    if median <= 0:
        raise DegenerateSpectrum(f"median flux {median:.4g} <= 0")
    if min_median is not None and median <= min_median:
        raise DegenerateSpectrum(f"median flux {median:.4g} <= {min_median:g} (--min-median)")
    if mean <= 0:
        raise DegenerateSpectrum(f"mean flux {mean:.4g} <= 0")
    if np.ptp(values) == 0:
        raise DegenerateSpectrum(f"constant flux {median:.4g}: no spectral information")
    return median, mean


def _check_snr(wavelength: np.ndarray, flux: np.ndarray, grid: Grid, min_snr: float | None):
    """DegenerateSpectrum if the input's own SNR estimate inside the grid is below min_snr."""
    if min_snr is None or min_snr <= 0:
        return
    inside = (np.asarray(wavelength) >= grid.start) & (np.asarray(wavelength) <= grid.stop)
    snr = estimate_snr(np.asarray(flux)[inside])
    if not snr >= min_snr:
        raise DegenerateSpectrum(f"SNR estimate {snr:.3g} < {min_snr:g} (DER_SNR; --min-snr)")


def prepare(
    wavelength: np.ndarray,
    flux: np.ndarray,
    grid: Grid,
    min_median: float | None = None,
    min_coverage: float = 0.5,
    min_snr: float | None = DEFAULT_MIN_SNR,
) -> PreparedSpectrum:
    """Resample, mask and median-normalise one spectrum; raise DegenerateSpectrum if unusable.

    ``min_median`` is in the input's flux units (50 ADU for HARPS raw counts; None, the
    default, applies no absolute cut); ``min_coverage`` is the fraction of the grid's
    usable pixels that must hold data; ``min_snr`` is the least DER_SNR estimate per
    pixel (None or 0: no cut). See the module docstring for the rules.
    """
    native = resample(wavelength, flux, grid)
    padded = grid.pad(native, fill=np.nan)
    mask = grid.mask & np.isfinite(padded).astype(np.uint8)
    usable = int(grid.mask.sum())
    covered = int(mask.sum())
    if covered == 0:
        raise DegenerateSpectrum(
            f"no finite flux on grid {grid.name} ({grid.start:.2f}-{grid.stop:.2f} A)"
        )
    if covered < min_coverage * usable:
        raise DegenerateSpectrum(
            f"covers only {covered / usable:.1%} of grid {grid.name} "
            f"({grid.start:.2f}-{grid.stop:.2f} A); at least {min_coverage:.0%} required"
        )
    median, mean = _check_flux(padded[mask.astype(bool)], min_median)
    _check_snr(wavelength, flux, grid, min_snr)
    normalised = np.where(mask.astype(bool), padded / median, 0.0).astype(np.float32)
    return PreparedSpectrum(normalised, mask, median, mean)
