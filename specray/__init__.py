"""specray: unsupervised beta-VAE discovery of stellar physics in survey spectra, on Ray.

The command line (``specray --help``) runs the pipeline; the notebook API
(:mod:`specray.api`) reads what it writes::

    import specray
    store = specray.open_store("store/")            # pyarrow / pandas, wavelengths in A
    spectrum = specray.read_spectrum("ADP.....fits")  # astropy Quantities
    model = specray.load_model("run/")              # .encode(files or flux), .decode(mu)
    specray.mutual_information(model.encode(store.flux()).mu, store.to_pandas()["teff"])

The API is imported on first use, so ``import specray`` stays light (no torch, no Ray).
"""

from __future__ import annotations

from importlib import import_module, metadata

from specray.errors import SpecrayError

try:
    __version__ = metadata.version("specray")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_API = ("open_store", "read_spectrum", "load_model", "mutual_information")
__all__ = ["SpecrayError", "__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module("specray.api"), name)
    raise AttributeError(f"module 'specray' has no attribute {name!r}")
