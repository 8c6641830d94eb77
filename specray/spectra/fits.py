"""Read (and, for synthetic data, write) archive spectrum files, one spectrum at a time.

Two layouts are understood:

``adp``
    ESO Phase-3 1-D spectrum (``ADP.*.fits``): a primary header holding the observation
    keywords and a binary table extension (``SPECTRUM``) with ONE row of array columns
    ``WAVE`` (Angstrom, barycentric for HARPS), ``FLUX`` (ADU, uncalibrated) and
    optionally ``ERR``. Column names are matched case-insensitively; a ``WAVE`` column
    whose ``TUNIT`` says nm (or um) is converted to Angstrom.
``s1d`` / ``linear``
    A 1-D primary (or first 1-D image) HDU with a linear wavelength solution,
    ``lambda_i = CRVAL1 + CDELT1 * (i + 1 - CRPIX1)`` for ``i = 0 .. N-1`` (``CD1_1`` is
    accepted in place of ``CDELT1``). HARPS DRS ``*_s1d_A.fits`` files are reported as
    ``s1d``; any other such image as ``linear``. The unit comes from ``CUNIT1`` (or from
    ``CTYPE1`` when, as in HARPS DRS files, it holds a unit name); Angstrom is assumed
    when neither says. Log-linear solutions: ``DC-FLAG = 1`` (IRAF convention: the
    linear solution is log10 of the wavelength) is turned into ``10 ** lambda``;
    any other non-linear ``CTYPE1`` algorithm (e.g. ``WAVE-LOG``, ``-TAB``) is refused
    with a :class:`SpectrumFileError` rather than read wrongly.

The reader never judges the science content: a spectrum whose flux is all NaN, all zero
or negative is returned as it is; quarantining such spectra is the preprocessing stage's
job. It does refuse files it cannot interpret (see :class:`SpectrumFileError`).
Likewise a header keyword that is missing, not numeric or unparsable (an invalid FITS
card) gives NaN in ``meta`` rather than an error.

Header keywords: see :data:`META_KEYWORDS`, the one place where the mapping from FITS
keywords to :attr:`RawSpectrum.meta` (with units) is documented. A keyword that is
missing or not numeric gives NaN, never an error.

Astropy warnings: the whole file is read into memory and decompressed here (so a
truncated gzip stream is detected as such), then opened by astropy with warnings
captured. ``VerifyWarning`` (astropy repairing a non-standard header card, common in
archive files) is dropped; astropy's "File may have been truncated" warning becomes a
:class:`SpectrumFileError`; any other warning is re-emitted unchanged.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import os
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyError, VerifyWarning
from astropy.utils.exceptions import AstropyUserWarning

from specray.errors import InputError, SpecrayError

__all__ = [
    "FORMATS",
    "META_KEYS",
    "META_KEYWORDS",
    "RawSpectrum",
    "SpectrumFileError",
    "read_spectrum",
    "spectrum_id",
    "write_adp",
]

SpectrumFormat = Literal["auto", "adp", "s1d", "linear"]
FORMATS: tuple[str, ...] = ("auto", "adp", "s1d", "linear")
Source = str | os.PathLike[str] | IO[bytes]

#: Mapping from ``RawSpectrum.meta`` keys to FITS header keywords, in ONE place.
#: key -> (keywords tried in order, unit, meaning). ``write_adp`` writes the first
#: keyword of each entry (and, for airmass, also the TEL AIRM START/END pair).
#: Derived fallbacks, used only when none of the keywords is present:
#:   airmass: mean of ``HIERARCH ESO TEL AIRM START`` and ``... END`` (DRS s1d files
#:            carry no AIRMASS keyword). Note: in the ADP fixture AIRMASS (1.077)
#:            equals AIRM START, not the start/end mean (1.0785).
#:   snr:     median of the per-order ``HIERARCH ESO DRS SPE EXT SN0 .. SN71``. The
#:            ADP keyword SNR ("Median signal to noise") is exactly this median
#:            (23.35 in the ADP fixture), so both formats give the same quantity.
META_KEYWORDS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "ra": (("RA",), "deg", "RA (J2000) of the pointing"),
    "dec": (("DEC",), "deg", "Dec (J2000) of the pointing"),
    "mjd_obs": (("MJD-OBS",), "d", "MJD at start of exposure"),
    "exptime": (("EXPTIME",), "s", "total integration time"),
    "airmass": (("AIRMASS",), "", "airmass"),
    "berv": (("HIERARCH ESO DRS BERV",), "km/s", "barycentric Earth RV"),
    "targ_rv": (("HIERARCH ESO TEL TARG RADVEL",), "km/s", "target RV given in the OB"),
    "snr": (("SNR",), "", "median S/N over orders"),
}
#: Keys of ``RawSpectrum.meta``: the numeric keys above (float, NaN when missing) and
#: ``format`` (str: 'adp', 's1d' or 'linear').
META_KEYS: tuple[str, ...] = (*META_KEYWORDS, "format")

_AIRM_START = "HIERARCH ESO TEL AIRM START"
_AIRM_END = "HIERARCH ESO TEL AIRM END"
_ORDER_SN = "HIERARCH ESO DRS SPE EXT SN{}"
_N_ORDERS_MAX = 200  # per-order S/N keywords are looked up until the first gap
_DRS_MARKER = "HIERARCH ESO DRS VERSION"
FITS_SUFFIXES = (".fits.gz", ".fit.gz", ".fts.gz", ".fits", ".fit", ".fts")
"""File names read as FITS (ingest lists these; ids drop them). Compressed first, so the
longest suffix is removed."""
_GZIP_MAGIC = b"\x1f\x8b"
_FITS_MAGIC = b"SIMPLE  ="
#: Wavelength units understood (lower case, spaces removed) -> factor to Angstrom.
_WAVE_UNITS: dict[str, float] = {
    "": 1.0,
    "angstrom": 1.0,
    "angstroms": 1.0,
    "a": 1.0,
    "aa": 1.0,
    "0.1nm": 1.0,
    "nm": 10.0,
    "nanometer": 10.0,
    "nanometers": 10.0,
    "um": 1.0e4,
    "micron": 1.0e4,
    "microns": 1.0e4,
}
#: Exceptions astropy, gzip and numpy raise on malformed input.
_READ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    VerifyError,
    zlib.error,
)


class SpectrumFileError(SpecrayError, ValueError):
    """A spectrum file cannot be interpreted; the message names the file and the problem."""

    def __init__(self, filename: str, problem: str) -> None:
        super().__init__(f"{filename}: {problem}")
        self.filename = filename
        self.problem = problem


@dataclass
class RawSpectrum:
    """One spectrum as stored in its file, before any resampling or normalisation.

    Attributes:
        id: file name without ``.fits``/``.fits.gz``/``.fit`` (e.g. ``ADP.2014-...123``).
        object: OBJECT header keyword, stripped; the id when missing or blank.
        wavelength: float64, Angstrom, strictly increasing, in the frame of the file
            (barycentric for HARPS ADP and DRS s1d).
        flux: float32 or float64 (native byte order), original units (ADU for HARPS).
        error: 1-sigma flux error in flux units, or None when the file has none or it is
            entirely NaN (as in HARPS ADP files: "Error spectrum not available").
        meta: see :data:`META_KEYS` / :data:`META_KEYWORDS`.
        flux_unit: the flux unit as the file writes it (TUNITn of the FLUX column, or
            BUNIT of the image), "" when it says none; not interpreted here.
    """

    id: str
    object: str
    wavelength: np.ndarray
    flux: np.ndarray
    error: np.ndarray | None
    meta: dict[str, Any] = field(default_factory=dict)
    flux_unit: str = ""

    def __len__(self) -> int:
        return int(self.wavelength.size)


# --------------------------------------------------------------------------- reading


def read_spectrum(
    source: Source, format: SpectrumFormat = "auto", name: str | None = None
) -> RawSpectrum:
    """Read one spectrum from a FITS file (plain or gzip).

    Args:
        source: a path (str or PathLike; ``.fits`` or ``.fits.gz``) or a binary file-like
            object (e.g. from ``fsspec.open("s3://...", "rb")``). A file object is read
            from its current position and left open for the caller to close.
        format: 'auto' (detect), or force 'adp', 's1d' or 'linear'. A forced format that
            does not match the file's layout raises.
        name: file name used for the id and in error messages; defaults to the path's
            name or the file object's ``name``/``path`` attribute.

    Returns:
        The spectrum with ``meta['format']`` set to the format found (or forced).

    Raises:
        SpectrumFileError: the file is empty, not FITS, truncated or corrupt, holds no
            spectrum HDU, lacks WAVE/FLUX, has a non-increasing wavelength axis, arrays
            of different lengths, or does not match a forced format.
        ValueError: ``format`` is not one of :data:`FORMATS`.
    """
    if format not in FORMATS:
        raise InputError(f"format must be one of {FORMATS}, got {format!r}")
    filename = _filename(source, name)
    data = _fits_bytes(_read_all(source, filename), filename)
    try:
        with (
            _astropy_warnings(filename),
            fits.open(io.BytesIO(data), memmap=False, lazy_load_hdus=False) as hdul,
        ):
            return _read_hdul(hdul, format, filename)
    except SpectrumFileError:
        raise
    except _READ_ERRORS as exc:
        raise SpectrumFileError(
            filename, f"truncated or corrupt FITS file ({type(exc).__name__}: {exc})"
        ) from exc


def spectrum_id(filename: str) -> str:
    """File name without directories and without a FITS suffix (case-insensitive)."""
    base = filename.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    lower = base.lower()
    for suffix in FITS_SUFFIXES:
        if lower.endswith(suffix):
            return base[: -len(suffix)]
    return base


def _filename(source: Source, name: str | None) -> str:
    """Name for ids and messages: ``name``, else the path or the file object's name."""
    if name:
        return str(name)
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    for attr in ("path", "name"):
        value = getattr(source, attr, None)
        if isinstance(value, str) and value:
            return value
    return "<stream>"


def _read_all(source: Source, filename: str) -> bytes:
    """All bytes of a path or file object; the path is closed, a file object left open."""
    try:
        if isinstance(source, str | os.PathLike):
            return Path(source).read_bytes()
        data = source.read()
    except OSError as exc:
        raise SpectrumFileError(filename, f"cannot read file ({exc})") from exc
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SpectrumFileError(filename, "source must be opened in binary mode ('rb')")
    return bytes(data)


def _fits_bytes(data: bytes, filename: str) -> bytes:
    """Decompress gzip if needed and check the FITS signature."""
    if not data:
        raise SpectrumFileError(filename, "empty file (0 bytes)")
    if data.startswith(_GZIP_MAGIC):
        data = _gunzip(data, filename)
    if not data.startswith(_FITS_MAGIC):
        raise SpectrumFileError(filename, "not a FITS file (does not start with 'SIMPLE  =')")
    return data


def _gunzip(data: bytes, filename: str) -> bytes:
    """Decompress a whole gzip stream, reporting truncation and corruption clearly."""
    try:
        return gzip.decompress(data)
    except EOFError as exc:
        raise SpectrumFileError(filename, f"truncated gzip stream ({exc})") from exc
    except (OSError, zlib.error) as exc:
        raise SpectrumFileError(filename, f"corrupt gzip stream ({exc})") from exc


@contextlib.contextmanager
def _astropy_warnings(filename: str) -> Iterator[None]:
    """Capture astropy warnings while reading: drop header-repair ``VerifyWarning``s,
    turn truncation warnings into :class:`SpectrumFileError`, re-emit anything else."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except Exception:
            _raise_if_truncated(caught, filename)
            raise
        _raise_if_truncated(caught, filename)
    for w in caught:
        if not issubclass(w.category, VerifyWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _raise_if_truncated(caught: list[warnings.WarningMessage], filename: str) -> None:
    """Raise SpectrumFileError if astropy warned that the file is truncated."""
    for w in caught:
        if _is_truncation(w):
            raise SpectrumFileError(filename, f"truncated FITS file ({w.message})")


def _is_truncation(w: warnings.WarningMessage) -> bool:
    return issubclass(w.category, AstropyUserWarning) and "truncated" in str(w.message)


def _read_hdul(hdul: fits.HDUList, fmt: str, filename: str) -> RawSpectrum:
    """Detect or check the layout, then extract arrays and metadata."""
    table = _find_table(hdul) if fmt in ("auto", "adp") else None
    image = _find_image(hdul) if table is None and fmt != "adp" else None
    if table is not None:
        wave, flux, err = _table_arrays(table, filename)
        found, headers = "adp", (hdul[0].header, table.header)
    elif image is not None:
        wave, flux, err = _image_arrays(image, filename)
        found = fmt if fmt != "auto" else _image_format(image.header, filename)
        headers = (image.header, hdul[0].header)
    else:
        raise SpectrumFileError(filename, _no_spectrum_reason(hdul, fmt))
    _check_arrays(wave, flux, err, filename)
    spectrum = _assemble(filename, wave, flux, err, headers, found)
    spectrum.flux_unit = _flux_unit(table, headers)
    return spectrum


def _flux_unit(table: fits.BinTableHDU | None, headers: tuple[fits.Header, ...]) -> str:
    """TUNITn of the table's FLUX column, else the first BUNIT of ``headers``; "" if none."""
    unit = table.columns[_columns(table)["FLUX"]].unit if table is not None else None
    unit = unit or _lookup(headers, "BUNIT")
    return str(unit).strip() if unit else ""


def _no_spectrum_reason(hdul: fits.HDUList, fmt: str) -> str:
    """Explain why no HDU matched: a forced-format mismatch or a missing column."""
    tables = [h for h in hdul if isinstance(h, fits.BinTableHDU)]
    missing = [_missing_columns(t) for t in tables]
    if fmt == "adp" and tables:
        return f"forced format 'adp': BINTABLE lacks column(s) {', '.join(missing[0])}"
    if fmt == "adp":
        return "forced format 'adp' does not match: no BINTABLE with WAVE and FLUX columns"
    if fmt in ("s1d", "linear"):
        return f"forced format {fmt!r} does not match: no 1-D image with CRVAL1/CDELT1"
    if tables:
        return f"no spectrum HDU found: BINTABLE lacks column(s) {', '.join(missing[0])}"
    return "no spectrum HDU found (no BINTABLE with WAVE/FLUX, no 1-D image with CRVAL1)"


# -- adp (Phase-3 binary table)


def _columns(table: fits.BinTableHDU) -> dict[str, str]:
    """Upper-case column name -> actual column name."""
    return {c.name.strip().upper(): c.name for c in table.columns}


def _missing_columns(table: fits.BinTableHDU) -> list[str]:
    cols = _columns(table)
    return [c for c in ("WAVE", "FLUX") if c not in cols]


def _find_table(hdul: fits.HDUList) -> fits.BinTableHDU | None:
    """First BINTABLE holding both WAVE and FLUX columns."""
    for hdu in hdul:
        if isinstance(hdu, fits.BinTableHDU) and not _missing_columns(hdu):
            return hdu
    return None


def _table_arrays(
    table: fits.BinTableHDU, filename: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """WAVE (Angstrom), FLUX and ERR of the single row of an ADP spectrum table."""
    nrows = 0 if table.data is None else len(table.data)
    if nrows != 1:
        raise SpectrumFileError(filename, f"spectrum table must have one row, found {nrows}")
    cols = _columns(table)
    row = table.data[0]
    wave = _as_float64(row[cols["WAVE"]])
    wave = wave * _wave_factor(table.columns[cols["WAVE"]].unit, filename)
    flux = _as_float(row[cols["FLUX"]])
    err = _as_float(row[cols["ERR"]]) if "ERR" in cols else None
    return wave, flux, err


# -- s1d / linear (1-D image with a linear WCS)


def _find_image(hdul: fits.HDUList) -> fits.PrimaryHDU | fits.ImageHDU | None:
    """First 1-D image HDU with data and a linear WCS (CRVAL1 plus CDELT1 or CD1_1)."""
    for hdu in hdul:
        if isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU) and _has_1d_wcs(hdu.header):
            return hdu
    return None


def _has_1d_wcs(hdr: fits.Header) -> bool:
    is_1d = hdr.get("NAXIS") == 1 and hdr.get("NAXIS1", 0) > 0
    return is_1d and "CRVAL1" in hdr and ("CDELT1" in hdr or "CD1_1" in hdr)


def _image_format(header: fits.Header, filename: str) -> str:
    """'s1d' for HARPS DRS products (name ``*_s1d_A`` or a DRS header), else 'linear'."""
    is_drs = spectrum_id(filename).endswith("_s1d_A") or _DRS_MARKER in header
    return "s1d" if is_drs else "linear"


def _image_arrays(
    image: fits.PrimaryHDU | fits.ImageHDU, filename: str
) -> tuple[np.ndarray, np.ndarray, None]:
    """Flux of a 1-D image and its wavelength from the linear WCS."""
    flux = _as_float(image.data)
    return _linear_wavelength(image.header, flux.size, filename), flux, None


def _linear_wavelength(header: fits.Header, n: int, filename: str) -> np.ndarray:
    """``CRVAL1 + CDELT1 * (i + 1 - CRPIX1)`` in Angstrom, handling DC-FLAG=1 (log10)."""
    ctype = str(header.get("CTYPE1", "")).strip()
    _check_linear_ctype(ctype, filename)
    try:
        crval = float(header["CRVAL1"])
        step = float(header["CDELT1"] if "CDELT1" in header else header["CD1_1"])
        crpix = float(header.get("CRPIX1", 1.0))
    except (TypeError, ValueError) as exc:
        raise SpectrumFileError(filename, f"non-numeric wavelength WCS ({exc})") from exc
    coord = crval + step * (np.arange(n, dtype=np.float64) + 1.0 - crpix)
    if _as_number(header.get("DC-FLAG")) == 1:
        coord = 10.0**coord
    return coord * _wave_factor(_image_wave_unit(header, ctype), filename)


def _check_linear_ctype(ctype: str, filename: str) -> None:
    """Refuse non-linear WCS algorithm codes (``WAVE-LOG``, ``AWAV-TAB``...)."""
    algorithm = ctype[4:].strip("-") if ctype[4:5] == "-" else ""
    if algorithm:
        raise SpectrumFileError(
            filename, f"unsupported non-linear wavelength axis CTYPE1={ctype!r}"
        )


def _image_wave_unit(header: fits.Header, ctype: str) -> str:
    """CUNIT1, else CTYPE1 when it holds a unit name (HARPS DRS: 'Angstrom'), else ''."""
    if "CUNIT1" in header:
        return str(header["CUNIT1"])
    return ctype if _unit_key(ctype) in _WAVE_UNITS else ""


# -- shared helpers


def _unit_key(unit: str | None) -> str:
    return "" if unit is None else str(unit).strip().lower().replace(" ", "")


def _wave_factor(unit: str | None, filename: str) -> float:
    """Factor converting a wavelength unit to Angstrom (no unit: Angstrom assumed)."""
    key = _unit_key(unit)
    if key not in _WAVE_UNITS:
        raise SpectrumFileError(filename, f"unsupported wavelength unit {unit!r}")
    return _WAVE_UNITS[key]


def _as_float64(values: Any) -> np.ndarray:
    """1-D float64 copy in native byte order."""
    return np.array(values, dtype=np.float64).reshape(-1)


def _as_float(values: Any) -> np.ndarray:
    """1-D copy in native byte order keeping float32/float64, other types to float64."""
    arr = np.asarray(values)
    is_single = arr.dtype.kind == "f" and arr.dtype.itemsize == 4
    dtype = np.float32 if is_single else np.float64
    return np.array(arr, dtype=dtype).reshape(-1)


def _check_arrays(
    wave: np.ndarray, flux: np.ndarray, err: np.ndarray | None, filename: str
) -> None:
    """Equal lengths, at least two pixels, finite strictly increasing wavelength."""
    if wave.size != flux.size or (err is not None and err.size != flux.size):
        sizes = f"wavelength {wave.size}, flux {flux.size}"
        sizes += "" if err is None else f", error {err.size}"
        raise SpectrumFileError(filename, f"array lengths differ ({sizes})")
    if wave.size < 2:
        raise SpectrumFileError(filename, f"spectrum has {wave.size} pixel(s)")
    if not np.all(np.isfinite(wave)):
        raise SpectrumFileError(filename, "wavelength contains NaN or infinite values")
    steps = np.diff(wave)
    if not np.all(steps > 0):
        first = int(np.flatnonzero(steps <= 0)[0])
        raise SpectrumFileError(
            filename, f"wavelength not strictly increasing (at pixel {first + 1})"
        )


def _assemble(
    filename: str,
    wave: np.ndarray,
    flux: np.ndarray,
    err: np.ndarray | None,
    headers: tuple[fits.Header, ...],
    fmt: str,
) -> RawSpectrum:
    """Build the RawSpectrum; ``headers`` are searched in order for each keyword."""
    sid = spectrum_id(filename)
    obj = str(_lookup(headers, "OBJECT") or "").strip() or sid
    if err is not None and np.all(np.isnan(err)):
        err = None
    meta: dict[str, Any] = {key: _meta_value(headers, key) for key in META_KEYWORDS}
    meta["format"] = fmt
    return RawSpectrum(sid, obj, wave, flux, err, meta)


def _lookup(headers: tuple[fits.Header, ...], keyword: str) -> Any:
    """Value of the first header holding ``keyword``; None if absent or unparsable."""
    for header in headers:
        if keyword in header:
            try:
                return header[keyword]
            except VerifyError:  # e.g. "EXPTIME = 12.5.3": treated as missing
                return None
    return None


def _meta_value(headers: tuple[fits.Header, ...], key: str) -> float:
    """Numeric meta value from the keyword table, then the derived fallback, else NaN."""
    for keyword in META_KEYWORDS[key][0]:
        value = _as_number(_lookup(headers, keyword))
        if not math.isnan(value):
            return value
    fallback = _FALLBACKS.get(key)
    return fallback(headers) if fallback else math.nan


def _as_number(value: Any) -> float:
    """float(value) for real numbers and numeric strings; NaN for anything else."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _airmass_from_start_end(headers: tuple[fits.Header, ...]) -> float:
    """Mean of TEL AIRM START and END; the one present if only one is; else NaN."""
    values = [_as_number(_lookup(headers, k)) for k in (_AIRM_START, _AIRM_END)]
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _snr_from_orders(headers: tuple[fits.Header, ...]) -> float:
    """Median of the per-order DRS S/N keywords SN0, SN1, ... (first gap ends the list)."""
    values = []
    for order in range(_N_ORDERS_MAX):
        value = _as_number(_lookup(headers, _ORDER_SN.format(order)))
        if math.isnan(value):
            break
        values.append(value)
    return float(np.median(values)) if values else math.nan


_FALLBACKS: dict[str, Callable[[tuple[fits.Header, ...]], float]] = {
    "airmass": _airmass_from_start_end,
    "snr": _snr_from_orders,
}


# --------------------------------------------------------------------------- writing


def write_adp(
    path_or_fileobj: str | os.PathLike[str] | IO[bytes],
    wavelength: np.ndarray,
    flux: np.ndarray,
    header: Mapping[str, Any],
    error: np.ndarray | None = None,
    overwrite: bool = False,
) -> None:
    """Write a Phase-3-like HARPS ADP file that :func:`read_spectrum` reads back.

    The primary HDU carries the header; the ``SPECTRUM`` BINTABLE extension one row of
    array columns WAVE (float64, Angstrom), FLUX (float32, ADU) and ERR (float32, ADU,
    NaN-filled when ``error`` is None, as in the archive).

    Args:
        path_or_fileobj: destination path (``.gz`` compresses) or binary file object.
        wavelength: Angstrom, 1-D, finite, strictly increasing.
        flux: same length as ``wavelength`` (stored as float32).
        header: keys of :data:`META_KEYWORDS` (``ra`` deg, ``dec`` deg, ``mjd_obs`` d,
            ``exptime`` s, ``airmass``, ``berv`` km/s, ``targ_rv`` km/s, ``snr``) are
            written under their FITS keywords (airmass also as TEL AIRM START/END);
            ``object`` -> OBJECT, ``spec_res`` -> SPEC_RES (default 115000). Any other
            key is written verbatim as a FITS keyword (use ``HIERARCH ...`` for long
            ones). None or NaN values are skipped (and so read back as NaN).
        error: optional 1-sigma error, same length as ``flux``.
        overwrite: replace an existing file.

    Raises:
        ValueError: arrays of wrong shape, different lengths, or a wavelength axis that
            is not finite and strictly increasing.
    """
    wave, flux32, err32 = _validated_for_writing(wavelength, flux, error)
    primary = fits.PrimaryHDU(header=_primary_header(header, wave))
    table = _spectrum_table(wave, flux32, err32)
    table.header["OBJECT"] = primary.header.get("OBJECT", "")
    fits.HDUList([primary, table]).writeto(path_or_fileobj, overwrite=overwrite)


def _validated_for_writing(
    wavelength: np.ndarray, flux: np.ndarray, error: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 wavelength, float32 flux and error (NaN when None), after checks."""
    wave = np.asarray(wavelength, dtype=np.float64)
    flux32 = np.asarray(flux, dtype=np.float32)
    err32 = np.full_like(flux32, np.nan) if error is None else np.asarray(error, np.float32)
    if wave.ndim != 1 or flux32.shape != wave.shape or err32.shape != wave.shape:
        raise InputError(
            "wavelength, flux and error must be 1-D of one length, got shapes "
            f"{wave.shape}, {flux32.shape}, {err32.shape}"
        )
    if wave.size < 2 or not np.all(np.isfinite(wave)) or not np.all(np.diff(wave) > 0):
        raise InputError("wavelength must be finite and strictly increasing (>= 2 pixels)")
    return wave, flux32, err32


def _primary_header(values: Mapping[str, Any], wave: np.ndarray) -> fits.Header:
    """Primary header from meta-style keys (see :func:`write_adp`)."""
    hdr = fits.Header()
    hdr["ORIGIN"] = ("specray", "synthetic spectrum written by specray")
    hdr["PRODCATG"] = ("SCIENCE.SPECTRUM", "Data product category")
    hdr["SPECSYS"] = ("BARYCENT", "Reference frame")
    hdr["FLUXCAL"] = ("UNCALIBRATED", "Type of flux calibration")
    hdr["SPEC_RES"] = (115000.0, "Reference spectral resolving power")
    hdr["WAVELMIN"] = (float(wave[0]) / 10.0, "[nm] Minimum wavelength")
    hdr["WAVELMAX"] = (float(wave[-1]) / 10.0, "[nm] Maximum wavelength")
    for key, value in values.items():
        if key == "format" or _is_missing(value):
            continue
        for keyword, card in _cards_for(key, value):
            hdr[keyword] = _fit_comment(keyword, card)
    return hdr


def _fit_comment(keyword: str, card: Any) -> Any:
    """Shorten a (value, comment) pair's comment so the card fits in 80 characters."""
    if not isinstance(card, tuple):
        return card
    value, comment = card
    used = len(fits.Card(keyword, value).image.rstrip())
    return (value, comment[: max(0, 80 - used - 3)])


def _is_missing(value: Any) -> bool:
    """None or a NaN number (FITS headers cannot hold NaN)."""
    if value is None:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def _cards_for(key: str, value: Any) -> list[tuple[str, Any]]:
    """(keyword, value or (value, comment)) cards for one header-dict entry."""
    if key == "object":
        return [("OBJECT", (str(value), "Object"))]
    if key == "spec_res":
        return [("SPEC_RES", (float(value), "Reference spectral resolving power"))]
    if key in META_KEYWORDS:
        keywords, unit, meaning = META_KEYWORDS[key]
        comment = f"[{unit}] {meaning}" if unit else meaning
        cards = [(keywords[0], (float(value), comment))]
        if key == "airmass":
            cards += [(_AIRM_START, float(value)), (_AIRM_END, float(value))]
        return cards
    return [(key, value)]


def _spectrum_table(wave: np.ndarray, flux: np.ndarray, err: np.ndarray) -> fits.BinTableHDU:
    """One-row BINTABLE named SPECTRUM with WAVE/FLUX/ERR array columns."""
    n = wave.size
    columns = [
        fits.Column("WAVE", format=f"{n}D", unit="Angstrom", array=wave[None, :]),
        fits.Column("FLUX", format=f"{n}E", unit="adu", array=flux[None, :]),
        fits.Column("ERR", format=f"{n}E", unit="adu", array=err[None, :]),
    ]
    table = fits.BinTableHDU.from_columns(columns, name="SPECTRUM")
    table.header["NELEM"] = (n, "Length of the data arrays")
    return table
