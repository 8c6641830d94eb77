"""Small stores with known content, for tests of the stages after ingest."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from specray import schema, storage
from specray.analysis.records import AnalysisRecord
from specray.data.shards import add_native_spectra
from specray.data.store import open_or_create_store, open_store
from specray.schema import FORMAT_VERSION
from specray.spectra.grid import SPEED_OF_LIGHT_KMS, named_grid

TOY_GRID = "linear:5000:5102.3:0.1"  # 1,024 pixels
TOY_MODEL = [
    "model.preset=demo",
    "model.latent_dim=8",
    "model.channels=[4, 8, 8, 8, 8, 8]",
    "model.kernels=[7, 5, 3, 3, 3, 3]",
    "model.strides=[2, 2, 2, 2, 2, 1]",
]
LINES_A = (5012.0, 5030.0, 5047.5, 5066.0, 5088.0)


def toy_spectra(rv: np.ndarray, teff: np.ndarray, grid) -> np.ndarray:
    """Gaussian absorption lines shifted by rv (km/s), depth set by teff (K); flux ~1."""
    wave = grid.native_wavelength
    depth = np.clip((7000.0 - teff) / 4000.0, 0.05, 0.9)
    flux = np.ones((rv.size, wave.size))
    for centre in LINES_A:
        shifted = centre * (1 + rv / SPEED_OF_LIGHT_KMS)
        flux -= depth[:, None] * np.exp(-0.5 * ((wave[None] - shifted[:, None]) / 0.25) ** 2)
    return flux


def write_toy_store(
    uri: str,
    n_objects: int = 60,
    epochs: int = 3,
    seed: int = 0,
    shards: int = 2,
    format_version: int = FORMAT_VERSION,
):
    """A store of n_objects x epochs toy spectra, with rv/teff labels, in store format
    ``format_version``; returns the labels."""
    rng = np.random.default_rng(seed)
    grid = named_grid(TOY_GRID)
    store = open_or_create_store(uri, grid, format_version=format_version)
    objects = np.repeat([f"TOY-{i:04d}" for i in range(n_objects)], epochs)
    rv = np.repeat(rng.uniform(-150, 150, n_objects), epochs)
    teff = np.repeat(rng.uniform(3500, 7000, n_objects), epochs)
    flux = toy_spectra(rv, teff, grid) + rng.normal(0, 0.01, (rv.size, grid.n_native))
    ids = [f"{obj}-e{i % epochs}" for i, obj in enumerate(objects)]
    add_native_spectra(store, ids, objects, flux, {"rv": rv, "teff": teff}, "toy", shards)
    return {"id": ids, "object": objects, "rv": rv, "teff": teff}


def write_linear_fits(path, grid, flux: np.ndarray, obj: str) -> None:
    """A 1-D FITS image with a linear wavelength WCS (Angstrom) on the grid's native pixels,
    as spectral libraries publish them: flux in whatever unit it is given."""
    from astropy.io import fits

    header = fits.Header(
        [
            ("CRVAL1", grid.start),
            ("CDELT1", grid.step),
            ("CRPIX1", 1.0),
            ("CTYPE1", "WAVE"),
            ("CUNIT1", "Angstrom"),
            ("OBJECT", obj),
        ]
    )
    fits.PrimaryHDU(data=np.asarray(flux, np.float32), header=header).writeto(path)


def plain_rows(uri: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """id -> (flux float16, mask uint8) of every committed row, read with pyarrow alone."""
    store = open_store(uri)
    rows = {}
    for shard in store.shard_uris():
        fs, path = storage.arrow_filesystem(shard)
        table = pq.read_table(path, filesystem=fs)
        flux = schema.decode_flux(table["flux"])
        mask = schema.decode_mask(table["mask"], store.grid.length)
        for k, spectrum_id in enumerate(table["id"].to_pylist()):
            assert spectrum_id not in rows, f"{spectrum_id} is stored twice"
            rows[spectrum_id] = (flux[k], mask[k])
    return rows


def analysis_record(**changes) -> AnalysisRecord:
    """A small valid analysis.json record (no labels, nothing live); ``changes`` override."""
    values = dict(
        created="2026-01-01T00:00:00+00:00", source={}, n_spectra=0, n_objects=0,
        n_selected=0, latent_dim=2, labels=[], selection={}, informative_nodes=[],
        live_nodes={}, dispersion=[], screen=None, mi=[], label_nodes={},
        label_nodes_marginal={}, label_kinds={}, attribution=None, node_independence=None,
        histogram_mi=None, anomalies=None, baseline=None, node_wavelengths=None,
        permutations={}, config={}, training=None, reconstruction_examples=None,
        provenance={}, figures=[], report="report.html", warnings=[],
        verdict={"status": "fit", "checks": []},
    )  # fmt: skip
    return AnalysisRecord(**{**values, **changes})
