"""specray from Python: stores, spectra, trained models and mutual information.

What the command line writes, opened in a notebook without a Ray cluster: everything here
reads files directly (local paths, ``file://`` or ``s3://`` URIs) and suits the scale of
an interactive session (a store's metadata, some thousands of spectra, one model).

A spectrum file, with its physical units (a genuine HARPS archive file):

>>> spectrum = read_spectrum(adp_file)
>>> spectrum.object, len(spectrum)
('IC4651No9122', 313124)
>>> spectrum.wavelength[:2]
<Quantity [3781.43, 3781.44] Angstrom>
>>> spectrum.flux.unit
Unit("adu")

A store, as a table with the grid's wavelengths and unpadded flux (masked pixels NaN):

>>> store = open_store(store_path)
>>> len(store), store.wavelength.unit, store.wavelength.shape
(12, Unit("Angstrom"), (1024,))
>>> table = store.to_pandas()
>>> [name for name in ("object", "norm", "snr", "rv", "teff", "flux") if name in table]
['object', 'norm', 'snr', 'rv', 'teff', 'flux']
>>> table.loc["TOY-0000-e0", "flux"].shape
(1024,)

A trained model encodes spectra with the preprocessing its store used, from the store's
normalised flux or from FITS files (:meth:`TrainedModel.encode`):

>>> model = load_model(run_path)
>>> latents = model.encode(store.flux())
>>> latents.mu.shape == (len(store), model.latent_dim)
True

and the mutual information (nats) of every node with a label, by the estimator the
significance test uses (:func:`specray.analysis.mi.mutual_information`):

>>> mutual_information(latents.mu, table["rv"].to_numpy()).shape == (model.latent_dim,)
True
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from astropy import units as u

from specray import schema, storage
from specray.analysis.mi import mutual_information
from specray.data.ingest import Preprocessing
from specray.data.reader import read_rows
from specray.data.records import QuarantineEntry
from specray.data.store import STORE_FILE, Store, StoreError
from specray.data.store import open_store as _open_store_records
from specray.errors import SpecrayError
from specray.model.checkpoint import checkpoint_grid, load_trained_model
from specray.model.records import CheckpointMeta
from specray.spectra import fits as spectrum_files
from specray.spectra.grid import Grid

__all__ = [
    "Latents",
    "Spectrum",
    "SpectrumStore",
    "TrainedModel",
    "load_model",
    "mutual_information",
    "open_store",
    "read_spectrum",
]


# --------------------------------------------------------------------------- one spectrum


def _flux_unit(text: str) -> u.UnitBase:
    """The astropy unit a FITS file's flux unit string names; dimensionless when it names
    none astropy knows (HARPS s1d files say "Relative Flux")."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)
        unit = u.Unit(text, parse_strict="silent") if text else u.dimensionless_unscaled
    return u.dimensionless_unscaled if isinstance(unit, u.UnrecognizedUnit) else unit


@dataclass(frozen=True)
class Spectrum:
    """One spectrum as its file holds it, with units.

    ``wavelength`` is in Angstrom (in the file's frame: barycentric for HARPS products);
    ``flux`` and ``uncertainty`` (1 sigma, None when the file has none) are in the file's
    flux unit when astropy knows it, else dimensionless, with the unit as written kept in
    ``meta["flux_unit"]``. ``meta`` also holds the header values specray reads (ra, dec,
    mjd_obs, exptime, airmass, berv, snr, ...) and the ``format`` found.
    """

    id: str
    object: str
    wavelength: u.Quantity
    flux: u.Quantity
    uncertainty: u.Quantity | None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.wavelength.size)

    def to_specutils(self):
        """This spectrum as a specutils ``Spectrum`` (``Spectrum1D`` before specutils 2),
        with the uncertainty as a standard deviation; needs ``pip install specutils``."""
        try:
            import specutils
            from astropy.nddata import StdDevUncertainty
        except ImportError:
            raise ImportError(
                "Spectrum.to_specutils needs specutils: pip install specutils"
            ) from None
        cls = getattr(specutils, "Spectrum", None) or specutils.Spectrum1D
        uncertainty = None if self.uncertainty is None else StdDevUncertainty(self.uncertainty)
        return cls(
            spectral_axis=self.wavelength,
            flux=self.flux,
            uncertainty=uncertainty,
            meta={"id": self.id, "object": self.object, **self.meta},
        )


def read_spectrum(path: str | os.PathLike, format: str = "auto") -> Spectrum:
    """Read one FITS spectrum (HARPS ADP table, DRS s1d, any 1-D linear-WCS image; plain
    or gzipped; local, ``file://`` or ``s3://``) into a :class:`Spectrum` with units.

    Raises :class:`specray.spectra.fits.SpectrumFileError` naming the file and the problem.
    """
    raw = _read_raw(path, format)
    flux_unit = _flux_unit(raw.flux_unit)
    return Spectrum(
        id=raw.id,
        object=raw.object,
        wavelength=raw.wavelength * u.AA,
        flux=raw.flux * flux_unit,
        uncertainty=None if raw.error is None else raw.error * flux_unit,
        meta={**raw.meta, "flux_unit": raw.flux_unit},
    )


def _read_raw(path: str | os.PathLike, format: str = "auto") -> spectrum_files.RawSpectrum:
    uri = storage.normalize(os.fspath(path))
    fs, fs_path = storage.filesystem(uri)
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    if not fs.exists(fs_path):
        raise spectrum_files.SpectrumFileError(uri, "no such file")
    with fs.open(fs_path, "rb") as handle:
        return spectrum_files.read_spectrum(handle, format=format, name=name)


# --------------------------------------------------------------------------- a store


@dataclass
class SpectrumStore:
    """A specray store opened for reading: its grid, its metadata and its spectra.

    ``flux`` everywhere here is the stored flux on the grid's native pixels (the padding
    removed), float32, divided by each spectrum's masked median (``norm``, in the input's
    flux units), with masked pixels as NaN.
    """

    records: Store

    @property
    def uri(self) -> str:
        return self.records.uri

    @property
    def grid(self) -> Grid:
        return self.records.grid

    @property
    def wavelength(self) -> u.Quantity:
        """Wavelength of each native grid pixel, Angstrom."""
        return self.grid.native_wavelength * u.AA

    @property
    def ids(self) -> list[str]:
        """Ids of the committed spectra, in manifest order."""
        return [e.id for e in self.records.manifest if e.ingested]

    @property
    def quarantine(self) -> list[QuarantineEntry]:
        """Every rejected input with its reason (``source``, ``id``, ``reason``, ``at``)."""
        return list(self.records.quarantine)

    def __len__(self) -> int:
        return self.records.n_spectra()

    def table(self, ids: Sequence[str] | None = None, flux: bool = True) -> pa.Table:
        """Spectra as a pyarrow Table: ``id``, ``object``, ``source``, ``norm``, every
        metadata and label column, and (``flux=True``) ``flux`` as a fixed-size list of
        float32 per row. All spectra, or those with ``ids`` in that order."""
        labelled = schema.label_and_meta_columns(self.records.schema)
        columns = ["object", "source", "norm", *labelled] + (["flux", "mask"] if flux else [])
        rows = read_rows(self.records, columns, None if ids is None else list(ids))
        if not flux:
            return rows
        values = self._native_flux(rows)
        flat = pa.array(values.reshape(-1), pa.float32())
        listed = pa.FixedSizeListArray.from_arrays(flat, self.grid.n_native)
        return rows.drop_columns(["flux", "mask"]).append_column("flux", listed)

    def to_pandas(self, ids: Sequence[str] | None = None, flux: bool = True):
        """:meth:`table` as a pandas DataFrame indexed by ``id`` (flux: one array per row)."""
        return self.table(ids, flux).to_pandas().set_index("id")

    def flux(self, ids: Sequence[str] | None = None) -> np.ndarray:
        """(n, n_native) float32 normalised flux, masked pixels NaN, rows in ``ids`` order."""
        rows = read_rows(self.records, ["flux", "mask"], None if ids is None else list(ids))
        return self._native_flux(rows)

    def _native_flux(self, rows: pa.Table) -> np.ndarray:
        flux = schema.decode_flux(rows["flux"]).astype(np.float32)
        mask = schema.decode_mask(rows["mask"], self.grid.length).astype(bool)
        flux[~mask] = np.nan
        native = slice(self.grid.pad_left, self.grid.pad_left + self.grid.n_native)
        return np.ascontiguousarray(flux[:, native])


def open_store(uri: str | os.PathLike) -> SpectrumStore:
    """Open the store at ``uri`` (a folder or URI holding ``store.json``) for reading."""
    uri = storage.normalize(os.fspath(uri))
    if not storage.exists(storage.join(uri, STORE_FILE)):
        raise StoreError(f"{uri}: not a specray store (no {STORE_FILE})")
    return SpectrumStore(_open_store_records(uri))


# --------------------------------------------------------------------------- a model


@dataclass(frozen=True)
class Latents:
    """The encoder's posterior for some spectra: ``mu`` and ``logvar``, (n, latent_dim)."""

    ids: list[str]
    mu: np.ndarray
    logvar: np.ndarray

    def to_pandas(self):
        """One row per spectrum (index ``id``), columns ``mu_0 ...`` and ``logvar_0 ...``."""
        import pandas as pd

        columns = {f"mu_{j}": self.mu[:, j] for j in range(self.mu.shape[1])}
        columns |= {f"logvar_{j}": self.logvar[:, j] for j in range(self.logvar.shape[1])}
        return pd.DataFrame(columns, index=pd.Index(self.ids, name="id"))


class ModelInputError(SpecrayError, ValueError):
    """Spectra a model cannot encode as given; the message says what it expected."""


@dataclass
class TrainedModel:
    """A trained specray model with the grid and preprocessing of the store it learned.

    :meth:`encode` takes FITS files, :class:`Spectrum` objects, or store-normalised flux
    arrays (as :meth:`SpectrumStore.flux` returns them) and gives the encoder's posterior
    exactly as ``specray analyze`` computes it (eval mode, flux rounded to the store's
    float16).
    """

    network: torch.nn.Module
    meta: CheckpointMeta
    grid: Grid
    preprocessing: Preprocessing
    checkpoint: str
    """The checkpoint folder the weights came from."""

    @property
    def latent_dim(self) -> int:
        return int(self.network.arch.latent_dim)

    def encode(self, spectra: Any, batch_size: int = 64) -> Latents:
        """The posterior (mu, logvar) of each spectrum; see the class docstring for inputs.

        A spectrum the store's preprocessing would reject (too little coverage of the
        grid, degenerate flux, SNR below the cut) raises
        :class:`specray.spectra.grid.DegenerateSpectrum` naming it.
        """
        ids, padded = self._prepared(spectra)
        mu, logvar = [], []
        with torch.inference_mode():
            for start in range(0, len(padded), batch_size):
                x = torch.from_numpy(padded[start : start + batch_size]).unsqueeze(1)
                m, v = self.network.encode(x)
                mu.append(m.float().numpy())
                logvar.append(v.float().numpy())
        return Latents(ids, np.concatenate(mu), np.concatenate(logvar))

    def decode(self, mu: np.ndarray) -> np.ndarray:
        """Reconstructions of latent codes (n, latent_dim): (n, n_native) normalised flux."""
        z = torch.as_tensor(np.atleast_2d(mu), dtype=torch.float32)
        with torch.inference_mode():
            padded = self.network.decode(z)[:, 0].float().numpy()
        return padded[:, self.grid.pad_left : self.grid.pad_left + self.grid.n_native]

    def _prepared(self, spectra: Any) -> tuple[list[str], np.ndarray]:
        """(ids, (n, L) float32 padded flux, masked pixels 0, float16-rounded as stored)."""
        if isinstance(spectra, np.ndarray):
            flux = self._from_array(spectra)
            ids = [str(i) for i in range(len(flux))]
        else:
            items = [spectra] if isinstance(spectra, str | os.PathLike | Spectrum) else spectra
            prepared = [self._prepare_one(item) for item in _as_list(items)]
            ids = [name for name, _ in prepared]
            flux = np.stack([row for _, row in prepared])
        return ids, flux.astype(schema.FLUX_DTYPE).astype(np.float32)

    def _from_array(self, flux: np.ndarray) -> np.ndarray:
        flux = np.atleast_2d(np.asarray(flux, dtype=np.float32))
        if flux.ndim != 2 or flux.shape[1] not in (self.grid.n_native, self.grid.length):
            raise ModelInputError(
                f"flux of shape {flux.shape}: expected (n, {self.grid.n_native}) native or "
                f"(n, {self.grid.length}) padded pixels of grid {self.grid.name}"
            )
        if flux.shape[1] == self.grid.n_native:
            flux = np.stack([self.grid.pad(row, fill=np.nan) for row in flux])
        usable = self.grid.mask.astype(bool)[None, :] & np.isfinite(flux)
        return np.where(usable, flux, 0.0).astype(np.float32)

    def _prepare_one(self, item: Any) -> tuple[str, np.ndarray]:
        if isinstance(item, str | os.PathLike):
            item = read_spectrum(item)
        if not isinstance(item, Spectrum):
            raise ModelInputError(
                f"cannot encode a {type(item).__name__}: give FITS paths, Spectrum objects "
                "or an (n, pixels) flux array"
            )
        prepared = self.preprocessing.apply(
            item.wavelength.to_value(u.AA), np.asarray(item.flux.value), self.grid
        )
        return item.id, prepared.flux


def _as_list(items: Iterable[Any]) -> list[Any]:
    items = list(items)
    if not items:
        raise ModelInputError("no spectra to encode")
    return items


def load_model(run: str | os.PathLike) -> TrainedModel:
    """The newest intact checkpoint of a training run folder (or one checkpoint folder),
    in eval mode on the CPU, with the grid and preprocessing of the store it was trained on
    (recorded in the checkpoint; for older checkpoints read from that store's
    ``store.json``, or the ingest defaults when the store is gone)."""
    network, meta, checkpoint = load_trained_model(storage.normalize(os.fspath(run)))
    grid, preprocessing = checkpoint_grid(meta), _training_preprocessing(meta)
    return TrainedModel(network, meta, grid, preprocessing, checkpoint)


def _training_preprocessing(meta: CheckpointMeta) -> Preprocessing:
    if meta.preprocessing is not None:
        return Preprocessing.from_record(meta.preprocessing)
    store = meta.store
    try:
        recorded = _open_store_records(store).preprocessing if store else None
    except (StoreError, OSError):
        recorded = None
    return Preprocessing.from_record(recorded)
