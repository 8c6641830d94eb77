"""The survey's spectra in batches: each star's template computed once, then observed at
each of its epochs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from specray.errors import InputError
from specray.spectra.grid import Grid
from specray.spectra.synth.epochs import draw_epochs
from specray.spectra.synth.grid_model import as_grid, grid_model
from specray.spectra.synth.labels import epoch_labels
from specray.spectra.synth.render import observe, star_continuum, template
from specray.spectra.synth.stars import draw_stars, star_rng

MAX_BATCH_BYTES = 64 * 2**20
"""Bound on the float32 flux of one batch, bytes."""

MAX_BATCH_SPECTRA = 256
"""Largest number of spectra in one batch."""

_EPOCH_KEYS = ("rv", "berv", "airmass", "pwv", "tilt", "snr", "defect")


@dataclass(frozen=True)
class SyntheticBatch:
    """A batch of spectra: flux (n, grid.n_native) float32 in ADU on the grid's native
    wavelengths (NaN only for all_nan defects) and per-spectrum label arrays."""

    flux: np.ndarray
    labels: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.flux)


def default_batch_size(grid: Grid) -> int:
    """Spectra per batch: at most 256 and at most MAX_BATCH_BYTES of float32 flux."""
    return int(max(1, min(MAX_BATCH_SPECTRA, MAX_BATCH_BYTES // (4 * grid.n_native))))


def generate(
    n_stars: int,
    mean_epochs: float,
    grid: Grid | str,
    seed: int,
    star_range: tuple[int, int] | None = None,
    *,
    noise: bool = True,
    batch_size: int | None = None,
) -> Iterator[SyntheticBatch]:
    """Yield the spectra of a synthetic survey (of stars ``star_range`` if given) in batches.

    Deterministic for ``seed``; the spectra of stars a..b-1 are identical whether they are
    generated alone (``star_range=(a, b)``) or as part of the whole survey. Each star's
    rest-frame spectrum is computed once and observed at each of its epochs.
    """
    grid = as_grid(grid)
    size = batch_size or default_batch_size(grid)
    if size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    stars = draw_stars(n_stars, seed, star_range)
    epochs = draw_epochs(stars, mean_epochs, seed)
    labels = epoch_labels(stars, epochs)
    model = grid_model(grid)
    current, rest, continuum = -1, None, None
    for start in range(0, len(epochs), size):
        stop = min(start + size, len(epochs))
        flux = np.empty((stop - start, grid.n_native), dtype=np.float32)
        for row in range(start, stop):
            position = int(epochs.star[row])
            if position != current:
                current = position
                params = (stars.teff, stars.logg, stars.feh, stars.vsini)
                rest = template(model, *(float(p[position]) for p in params))
                continuum = star_continuum(model, float(stars.teff[position]))
            epoch = {key: getattr(epochs, key)[row] for key in _EPOCH_KEYS}
            rng = None
            if noise:
                rng = star_rng(seed, int(stars.index[position]), 2, int(epochs.epoch[row]))
            flux[row - start] = observe(model, rest, continuum, epoch, rng)
        yield SyntheticBatch(flux, {key: value[start:stop] for key, value in labels.items()})
