"""The embedded synthetic survey: HARPS-like stars, epochs and spectra with known truth.

A survey is drawn in three steps, each deterministic for a seed and chunkable by star:

1. ``draw_stars``: effective temperature, surface gravity, metallicity, projected
   rotation, systemic radial velocity, sky position and brightness of each star.
2. ``draw_epochs``: a heavy-tailed number of observations per star, each with its own
   signal-to-noise ratio, date, barycentric correction, airmass, water column, radial
   velocity (binaries move) and, rarely, a defect that the ingest must flag. Each
   observation's id is its star's name (which holds the seed) and its time to the
   millisecond, as archive names carry a timestamp: surveys or seasons drawn with
   different seeds never share an id, and the same survey always has the same ids.
3. ``generate``: the spectra, in ADU on a grid's native pixels, in batches.

Per-star randomness comes from ``numpy.random.SeedSequence(seed, spawn_key=(star, k))``
(k = 0 stellar parameters, 1 epochs, 2 noise), so any range of stars can be produced on
its own and matches the whole survey exactly (parallel tasks each take a range).

Spectrum model (all wavelengths in Angstrom, in air like the HARPS products):

- Continuum: Planck B_lambda(Teff) times a fixed instrument throughput (``throughput``:
  a log-normal in wavelength peaking at 5,600 A) times atmospheric extinction at the
  epoch's airmass (Rayleigh + aerosol + ozone, ``extinction_mag``) times a small
  per-epoch chromatic tilt (fibre/slit losses).
- Lines: real strong lines (Balmer, Na D, Mg b, Ca II H&K, Ca I, Fe I, Fe II, Ba II, ...)
  plus a pseudo-random metal-line forest, fixed by ``LINE_LIST_SEED`` and independent of
  the survey seed. Each line's integrated optical depth follows a one-layer LTE recipe:
  abundance x 10**[Fe/H] x gf x Boltzmann factor 10**(-theta chi) x Saha ionisation
  fraction, divided by the H- + H I bound-free continuum opacity, with an electron
  pressure that grows with Teff and logg (``electron_pressure``). Neutral lines of
  ionised metals thus strengthen strongly towards K and M stars; ionised lines grow
  with falling gravity; damping (van der Waals for metals, Stark for hydrogen) widens
  with gravity. Profiles are Voigt (Gaussian thermal + microturbulent core, Lorentzian
  damping wings); the residual flux is 1 - D_MAX * (1 - exp(-tau)), so even saturated
  cores keep a little flux, as real photospheric cores do. Stars below 4,200 K get TiO
  band depressions.
- Broadening: rotation (limb-darkened profile, vsini), a Gaussian macroturbulence and
  the instrumental Gaussian (FWHM = c / grid.resolving_power) are combined into one
  kernel and applied once per star on a uniform log-lambda ("velocity") axis.

Frames and signs: the output is barycentric, like the HARPS archive. A stellar line with
rest wavelength lambda0 appears at lambda0 * (1 + rv / c), rv the star's barycentric
radial velocity of that epoch (positive = receding). Telluric lines are fixed in the
observatory frame; the barycentric correction maps lambda_topo to
lambda_topo * (1 + berv / c), so a telluric line at lambda_tel appears at
lambda_tel * (1 + berv / c). ``berv`` is the Earth's velocity towards the star
(positive = approaching the star), the HARPS DRS convention in which
rv = rv_observed + berv. Doppler factors are the first-order 1 + v / c throughout.

Counts: the spectrum is scaled so that the continuum at 5,500 A (``SNR_REFERENCE_A``,
before line absorption) holds the counts c for which c / sqrt(c + read_noise**2) equals
the epoch's SNR; the noise is Gaussian with variance counts + read_noise**2 (gain 1
e-/ADU). Grid gaps hold exact zeros. Defects: ``low_flux`` (a very low SNR and a median
below 50 ADU), ``negative`` (an over-subtracted sky: a constant offset makes the mean
<= 0), ``all_nan`` (corrupt: every pixel NaN).

Simplifications a reviewer should know: one-layer line formation (no model atmosphere,
no radiative transfer, no limb-darkening dependence of line profiles); atomic data of
the real lines are approximate (see ``data/metal_lines.csv``); continuum opacity ignores hydrogen
ionisation and electron scattering; Balmer strengths use a compressed Boltzmann-Saha
factor (``BALMER_COMPRESSION``) and Lorentzian Stark wings; telluric transmission is
computed once at airmass 1 (convolved with the instrument) and raised to the power
airmass x column; no Rossiter, no convective blueshift, no activity, no blaze residuals,
no cosmic rays, no sky emission lines; the forest is random, not a real line list.

Modules:

- ``tables``: the line and band tables of ``data/*.csv`` (atomic data, real metal and
  Balmer lines, TiO, O2 and H2O bands), with their sources.
- ``stars``, ``epochs``, ``labels``: the survey's population, its observations, and the
  ids and label columns of each spectrum.
- ``photosphere``: electron pressure, ionisation, continuum opacity, turbulence.
- ``lines``: the line list (real + forest) and each line's strength and widths for a star.
- ``profiles``: Gaussian and Voigt profiles, the broadening kernel, TiO bands.
- ``continuum``: Planck, throughput, extinction, counts for an SNR.
- ``tellurics``: O2 and H2O lines and their optical depth on a grid.
- ``grid_model``: what a grid fixes for every star and epoch (computed once per grid).
- ``render``: a star's rest-frame template and one observation of it in ADU.
- ``survey``: ``generate``, the survey's spectra in batches.

The package exports every public function and class and the few constants callers need
(defect names, the SNR reference wavelength, velocity limits ...); the model's tuning
constants live in the module that uses them (e.g. ``synth.lines.LOG_S0``).
"""

from specray.spectra.synth.continuum import (
    READ_NOISE_E,
    SNR_REFERENCE_A,
    counts_for_snr,
    extinction_mag,
    planck,
    throughput,
)
from specray.spectra.synth.epochs import DEFECTS, Epochs, barycentric_correction, draw_epochs
from specray.spectra.synth.grid_model import MAX_ABS_BERV_KMS
from specray.spectra.synth.labels import epoch_labels, observation_id, observation_timestamp
from specray.spectra.synth.lines import LINE_LIST_SEED, LineList, line_list, line_strengths
from specray.spectra.synth.photosphere import electron_pressure, macroturbulence, microturbulence
from specray.spectra.synth.profiles import broadening_kernel
from specray.spectra.synth.render import MAX_ABS_RV_KMS, render, rest_frame_spectrum
from specray.spectra.synth.stars import Stars, draw_stars, star_name
from specray.spectra.synth.survey import SyntheticBatch, default_batch_size, generate
from specray.spectra.synth.tellurics import PWV_REFERENCE_MM, telluric_lines

__all__ = [
    "DEFECTS",
    "LINE_LIST_SEED",
    "MAX_ABS_BERV_KMS",
    "MAX_ABS_RV_KMS",
    "PWV_REFERENCE_MM",
    "READ_NOISE_E",
    "SNR_REFERENCE_A",
    "Epochs",
    "LineList",
    "Stars",
    "SyntheticBatch",
    "barycentric_correction",
    "broadening_kernel",
    "counts_for_snr",
    "default_batch_size",
    "draw_epochs",
    "draw_stars",
    "electron_pressure",
    "epoch_labels",
    "extinction_mag",
    "generate",
    "line_list",
    "line_strengths",
    "macroturbulence",
    "microturbulence",
    "observation_id",
    "observation_timestamp",
    "planck",
    "render",
    "rest_frame_spectrum",
    "star_name",
    "telluric_lines",
    "throughput",
]
