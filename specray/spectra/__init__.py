"""One spectrum at a time: file readers, grids, synthetic spectra (no Ray in here)."""

from specray.spectra.fits import RawSpectrum, SpectrumFileError, read_spectrum, write_adp

__all__ = ["RawSpectrum", "SpectrumFileError", "read_spectrum", "write_adp"]
