"""What a wavelength grid fixes for every star and epoch: the fine log-lambda axis spectra
are computed on, the lines within reach, throughput, extinction and telluric depths."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from specray.spectra.grid import SPEED_OF_LIGHT_KMS, Grid, named_grid
from specray.spectra.synth.continuum import SNR_REFERENCE_A, extinction_mag, throughput
from specray.spectra.synth.lines import LineList, line_list
from specray.spectra.synth.profiles import MAX_WING_KMS
from specray.spectra.synth.tellurics import telluric_depths

FINE_MARGIN_KMS = 1000.0
"""Extra velocity range of the fine rest-frame axis on each side of a grid, km/s."""

MAX_FINE_STEP_KMS = 1.0
"""Upper bound on the fine axis step, km/s (resolves thermal line cores)."""

MAX_ABS_BERV_KMS = 40.0
"""Largest |barycentric correction| a spectrum can be rendered at, km/s (Earth: < 31)."""


@dataclass(frozen=True, eq=False)
class GridModel:
    """Everything about a grid that does not depend on the star or the epoch."""

    grid: Grid
    step: float  # fine velocity step, km/s
    log_start: float  # ln(lambda / A) of fine sample 0
    n_fine: int
    sigma_instrument: float  # km/s
    lines: LineList
    pixel_position: np.ndarray  # fine sample of each native pixel at zero velocity
    throughput: np.ndarray  # relative to its value at SNR_REFERENCE_A
    extinction: np.ndarray  # mag per airmass, minus the value at SNR_REFERENCE_A
    tilt_axis: np.ndarray  # (lambda - SNR_REFERENCE_A) / 1000 A
    telluric_pixels: np.ndarray  # native pixels that can hold a telluric line
    tau_o2: np.ndarray  # effective zenith optical depth on the fine (topocentric) axis
    tau_h2o: np.ndarray  # the same for water at PWV_REFERENCE_MM
    gap: np.ndarray  # bool: native pixels inside a detector gap

    @property
    def log_step(self) -> float:
        return self.step / SPEED_OF_LIGHT_KMS

    @property
    def fine_wavelength(self) -> np.ndarray:
        return np.exp(self.log_start + self.log_step * np.arange(self.n_fine))


def as_grid(grid: Grid | str) -> Grid:
    """A grid, given as one or by name (``named_grid``)."""
    return named_grid(grid) if isinstance(grid, str) else grid


@functools.lru_cache(maxsize=4)
def grid_model(grid: Grid) -> GridModel:
    """The ``GridModel`` of a grid, computed once (the telluric depths take a while)."""
    fwhm = SPEED_OF_LIGHT_KMS / grid.resolving_power
    step = min(fwhm / 5.0, MAX_FINE_STEP_KMS)
    log_step = step / SPEED_OF_LIGHT_KMS
    margin = FINE_MARGIN_KMS / SPEED_OF_LIGHT_KMS
    log_start = math.log(grid.start) - margin
    n_fine = int(math.ceil((math.log(grid.stop) + margin - log_start) / log_step)) + 1
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    wavelength = grid.native_wavelength
    wing = MAX_WING_KMS / SPEED_OF_LIGHT_KMS
    lines = line_list().select(
        math.exp(log_start - wing), math.exp(log_start + n_fine * log_step + wing)
    )
    tau = telluric_depths(log_start, step, n_fine, sigma)
    # Native pixels within reach (|berv| <= MAX_ABS_BERV_KMS) of any telluric absorption.
    reach = int(math.ceil(MAX_ABS_BERV_KMS / step)) + 2
    absorbing = (
        np.convolve((tau["O2"] + 10 * tau["H2O"]) > 1e-6, np.ones(2 * reach + 1), "same") > 0
    )
    position = (np.log(wavelength) - log_start) / log_step
    gap = np.zeros(grid.n_native, dtype=bool)
    for low, high in grid.gaps:
        gap |= (wavelength >= low) & (wavelength <= high)
    return GridModel(
        grid=grid,
        step=step,
        log_start=log_start,
        n_fine=n_fine,
        sigma_instrument=sigma,
        lines=lines,
        pixel_position=position,
        throughput=throughput(wavelength) / throughput(np.array(SNR_REFERENCE_A)),
        extinction=extinction_mag(wavelength) - extinction_mag(np.array(SNR_REFERENCE_A)),
        tilt_axis=(wavelength - SNR_REFERENCE_A) / 1000.0,
        telluric_pixels=np.flatnonzero(absorbing[np.round(position).astype(np.intp)]),
        tau_o2=tau["O2"],
        tau_h2o=tau["H2O"],
        gap=gap,
    )
