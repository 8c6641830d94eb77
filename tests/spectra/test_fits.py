"""Tests for specray.spectra.fits against the two real HARPS archive files in tests/data.

Expected values were read once from the files' own headers and data with astropy and
are written here as literals (see tests/data/PROVENANCE.md).
"""

from __future__ import annotations

import gzip
import io
import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from specray.spectra.fits import (
    META_KEYS,
    RawSpectrum,
    SpectrumFileError,
    read_spectrum,
    spectrum_id,
    write_adp,
)

DATA = Path(__file__).resolve().parents[1] / "data"
ADP = DATA / "ADP.2014-09-16T11:04:45.123.fits.gz"
S1D = DATA / "HARPS.2010-09-18T23:42:36.178_s1d_A.fits.gz"


@pytest.fixture(scope="module")
def adp() -> RawSpectrum:
    return read_spectrum(ADP)


@pytest.fixture(scope="module")
def s1d() -> RawSpectrum:
    return read_spectrum(S1D)


def _assert_same(a: RawSpectrum, b: RawSpectrum) -> None:
    assert a.id == b.id and a.object == b.object
    np.testing.assert_array_equal(a.wavelength, b.wavelength)
    np.testing.assert_array_equal(a.flux, b.flux)
    assert (a.error is None) == (b.error is None)
    if a.error is not None:
        np.testing.assert_array_equal(a.error, b.error)
    assert a.meta.keys() == b.meta.keys()
    for key, value in a.meta.items():
        other = b.meta[key]
        assert value == other or (math.isnan(value) and math.isnan(other)), key


# --------------------------------------------------------------------- real ADP file


def test_adp_arrays(adp: RawSpectrum) -> None:
    assert adp.id == "ADP.2014-09-16T11:04:45.123"
    assert adp.object == "IC4651No9122"
    assert len(adp) == adp.flux.size == 313124
    assert adp.wavelength.dtype == np.float64 and adp.wavelength.dtype.isnative
    assert adp.flux.dtype == np.float32 and adp.flux.dtype.isnative
    assert adp.wavelength[0] == pytest.approx(3781.43, abs=1e-9)
    assert adp.wavelength[-1] == pytest.approx(6912.66, abs=1e-9)
    np.testing.assert_allclose(np.diff(adp.wavelength), 0.01, atol=1e-9)
    assert adp.flux[0] == pytest.approx(-17.990522, rel=1e-6)
    assert float(np.median(adp.flux)) == pytest.approx(645.59436, rel=1e-6)
    assert not np.isnan(adp.flux).any()
    assert (adp.flux < 0).sum() == 5160  # uncalibrated ADU can be negative


def test_adp_error_all_nan_reads_as_none(adp: RawSpectrum) -> None:
    # ERR column is all NaN in the archive file ("Error spectrum not available").
    assert adp.error is None


def test_adp_ccd_gap_zero_run(adp: RawSpectrum) -> None:
    zeros = np.flatnonzero(adp.flux == 0)
    assert zeros.size == 3295
    assert (zeros[0], zeros[-1]) == (152273, 155567)
    np.testing.assert_array_equal(zeros, np.arange(152273, 155568))
    assert adp.wavelength[zeros[0]] == pytest.approx(5304.16, abs=1e-9)
    assert adp.wavelength[zeros[-1]] == pytest.approx(5337.10, abs=1e-9)


def test_adp_meta(adp: RawSpectrum) -> None:
    assert set(adp.meta) == set(META_KEYS)
    assert adp.meta == {
        "ra": 261.21664,
        "dec": -49.94913,
        "mjd_obs": 53921.16157490,
        "exptime": 302.5016,
        "airmass": 1.077,  # AIRMASS keyword (equals AIRM START 1.077; END is 1.080)
        "berv": -8.6859110031507,
        "targ_rv": -30.6,
        "snr": 23.35,  # SNR keyword = median of DRS SPE EXT SN0..SN71
        "format": "adp",
    }


# --------------------------------------------------------------------- real s1d file


def test_s1d_arrays(s1d: RawSpectrum) -> None:
    assert s1d.id == "HARPS.2010-09-18T23:42:36.178_s1d_A"
    assert s1d.object == "Gl581"
    assert len(s1d) == s1d.flux.size == 313114
    assert s1d.flux.dtype == np.float32 and s1d.flux.dtype.isnative
    assert s1d.error is None
    expected = 3781.19 + 0.01 * np.arange(313114)  # CRVAL1 + CDELT1 * (i + 1 - CRPIX1)
    np.testing.assert_allclose(s1d.wavelength, expected, rtol=0, atol=1e-9)
    assert s1d.wavelength[-1] == pytest.approx(6912.32, abs=1e-9)
    assert s1d.flux[0] == pytest.approx(77.3605, rel=1e-6)
    assert float(np.median(s1d.flux)) == pytest.approx(882.93042, rel=1e-6)


def test_s1d_ccd_gap_zero_run(s1d: RawSpectrum) -> None:
    zeros = np.flatnonzero(s1d.flux == 0)
    np.testing.assert_array_equal(zeros, np.arange(152271, 155566))
    assert s1d.wavelength[zeros[0]] == pytest.approx(5303.90, abs=1e-9)
    assert s1d.wavelength[zeros[-1]] == pytest.approx(5336.84, abs=1e-9)


def test_s1d_meta(s1d: RawSpectrum) -> None:
    assert s1d.meta["format"] == "s1d"
    assert s1d.meta["ra"] == 229.863516
    assert s1d.meta["dec"] == -7.72219
    assert s1d.meta["mjd_obs"] == 55457.98791873
    assert s1d.meta["exptime"] == 900.0007
    assert s1d.meta["berv"] == -23.5438771778635
    assert s1d.meta["targ_rv"] == -9.8
    # no AIRMASS keyword: mean of TEL AIRM START 1.691 and END 1.839
    assert s1d.meta["airmass"] == pytest.approx(1.765, abs=1e-12)
    # no SNR keyword: median of the 72 per-order DRS SPE EXT SN values
    assert s1d.meta["snr"] == pytest.approx(23.9, abs=1e-12)


# ------------------------------------------------------------------ format handling


def test_detects_s1d_from_drs_header_without_name_hint(tmp_path: Path) -> None:
    renamed = tmp_path / "renamed.fits.gz"
    renamed.write_bytes(S1D.read_bytes())
    spec = read_spectrum(renamed)
    assert spec.id == "renamed" and spec.meta["format"] == "s1d"


def test_forced_formats_on_real_files(s1d: RawSpectrum) -> None:
    assert read_spectrum(ADP, format="adp").meta["format"] == "adp"
    assert read_spectrum(S1D, format="s1d").meta["format"] == "s1d"
    linear = read_spectrum(S1D, format="linear")
    assert linear.meta["format"] == "linear"
    np.testing.assert_array_equal(linear.flux, s1d.flux)


@pytest.mark.parametrize(("path", "fmt"), [(ADP, "s1d"), (ADP, "linear"), (S1D, "adp")])
def test_forced_wrong_format_raises(path: Path, fmt: str) -> None:
    with pytest.raises(SpectrumFileError, match=rf"{path.name}.*forced format '{fmt}'"):
        read_spectrum(path, format=fmt)


def test_unknown_format_argument() -> None:
    with pytest.raises(ValueError, match="format must be one of"):
        read_spectrum(ADP, format="e2ds")  # type: ignore[arg-type]


# ------------------------------------------------------------------ file-like sources


def test_file_object_matches_path(adp: RawSpectrum) -> None:
    with open(ADP, "rb") as stream:
        spec = read_spectrum(stream)
        assert not stream.closed  # the caller owns the stream
    _assert_same(spec, adp)


def test_in_memory_stream_uses_given_name(s1d: RawSpectrum) -> None:
    spec = read_spectrum(io.BytesIO(S1D.read_bytes()), name=S1D.name)
    _assert_same(spec, s1d)
    anonymous = read_spectrum(io.BytesIO(S1D.read_bytes()))
    assert anonymous.id == "<stream>"
    assert anonymous.meta["format"] == "s1d"  # no name hint, but a HARPS DRS header


def test_fsspec_file_object(adp: RawSpectrum) -> None:
    fsspec = pytest.importorskip("fsspec")
    url = f"memory://specray-test/raw/{ADP.name}"
    with fsspec.open(url, "wb") as out:
        out.write(ADP.read_bytes())
    with fsspec.open(url, "rb") as stream:
        spec = read_spectrum(stream)
    _assert_same(spec, adp)


def test_uncompressed_file(tmp_path: Path, s1d: RawSpectrum) -> None:
    plain = tmp_path / S1D.name.removesuffix(".gz")
    plain.write_bytes(gzip.decompress(S1D.read_bytes()))
    _assert_same(read_spectrum(plain), s1d)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ADP.2014-09-16T11:04:45.123.fits", "ADP.2014-09-16T11:04:45.123"),
        ("s3://bucket/raw/x_s1d_A.FITS.GZ", "x_s1d_A"),
        ("spec.fit", "spec"),
        ("no_suffix", "no_suffix"),
    ],
)
def test_spectrum_id(name: str, expected: str) -> None:
    assert spectrum_id(name) == expected


# ----------------------------------------------------------------- corrupt inputs


@pytest.mark.parametrize("fraction", [0.0005, 0.3, 0.999])
def test_truncated_gzip_raises(tmp_path: Path, fraction: float) -> None:
    data = ADP.read_bytes()
    bad = tmp_path / ADP.name
    bad.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(SpectrumFileError, match=rf"{bad.name}.*truncated"):
        read_spectrum(bad)


@pytest.mark.parametrize("fraction", [0.0001, 0.3, 0.999])
def test_truncated_plain_fits_raises(tmp_path: Path, fraction: float) -> None:
    data = gzip.decompress(ADP.read_bytes())
    bad = tmp_path / "cut.fits"
    bad.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(SpectrumFileError, match=r"cut\.fits.*(truncated|corrupt)"):
        read_spectrum(bad)


def test_corrupt_gzip_raises(tmp_path: Path) -> None:
    data = bytearray(S1D.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    bad = tmp_path / "flipped.fits.gz"
    bad.write_bytes(bytes(data))
    with pytest.raises(SpectrumFileError, match=r"flipped\.fits\.gz.*corrupt gzip"):
        read_spectrum(bad)


def test_text_file_raises(tmp_path: Path) -> None:
    bad = tmp_path / "notes.fits"
    bad.write_text("this is not a FITS file\n" * 10)
    with pytest.raises(SpectrumFileError, match=r"notes\.fits.*not a FITS file"):
        read_spectrum(bad)


def test_empty_file_raises(tmp_path: Path) -> None:
    bad = tmp_path / "empty.fits.gz"
    bad.write_bytes(b"")
    with pytest.raises(SpectrumFileError, match=r"empty\.fits\.gz.*empty file"):
        read_spectrum(bad)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(SpectrumFileError, match=r"absent\.fits.*cannot read"):
        read_spectrum(tmp_path / "absent.fits")


def test_text_mode_stream_raises() -> None:
    with pytest.raises(SpectrumFileError, match="binary mode"):
        read_spectrum(io.StringIO("SIMPLE  ="), name="text.fits")


def test_error_is_a_value_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.fits"
    bad.write_bytes(b"\0" * 10)
    with pytest.raises(ValueError) as info:
        read_spectrum(bad)
    assert isinstance(info.value, SpectrumFileError)
    assert info.value.filename == str(bad) and "not a FITS file" in info.value.problem


# ------------------------------------------------ synthetic layouts and edge cases


def _table_file(path: Path, columns: list[fits.Column], header: dict | None = None) -> Path:
    primary = fits.PrimaryHDU(header=fits.Header(list((header or {}).items())))
    table = fits.BinTableHDU.from_columns(columns, name="SPECTRUM")
    fits.HDUList([primary, table]).writeto(path)
    return path


def _array_col(name: str, values: np.ndarray, fmt: str = "D", unit: str | None = None):
    return fits.Column(name, format=f"{values.size}{fmt}", unit=unit, array=values[None, :])


def _image_file(path: Path, flux: np.ndarray, cards: dict[str, object]) -> Path:
    fits.PrimaryHDU(data=flux, header=fits.Header(list(cards.items()))).writeto(path)
    return path


def test_adp_nm_units_and_lowercase_columns(tmp_path: Path) -> None:
    wave_nm = np.linspace(500.0, 501.0, 101)
    flux = np.arange(101, dtype=np.float32)
    path = _table_file(
        tmp_path / "nm.fits",
        [_array_col("wave", wave_nm, unit="nm"), _array_col("Flux", flux, "E")],
        {"OBJECT": "  HD 1  "},
    )
    spec = read_spectrum(path)
    np.testing.assert_allclose(spec.wavelength, wave_nm * 10.0)
    np.testing.assert_array_equal(spec.flux, flux)
    assert spec.object == "HD 1" and spec.error is None and spec.meta["format"] == "adp"
    assert all(math.isnan(spec.meta[k]) for k in META_KEYS if k != "format")


def test_adp_missing_flux_column(tmp_path: Path) -> None:
    path = _table_file(tmp_path / "noflux.fits", [_array_col("WAVE", np.arange(5.0) + 1)])
    with pytest.raises(SpectrumFileError, match=r"noflux\.fits.*lacks column\(s\) FLUX"):
        read_spectrum(path)
    with pytest.raises(SpectrumFileError, match="forced format 'adp'.*FLUX"):
        read_spectrum(path, format="adp")


def test_adp_lengths_differ(tmp_path: Path) -> None:
    cols = [_array_col("WAVE", np.arange(10.0) + 1), _array_col("FLUX", np.ones(9), "E")]
    path = _table_file(tmp_path / "ragged.fits", cols)
    with pytest.raises(SpectrumFileError, match=r"ragged\.fits.*lengths differ"):
        read_spectrum(path)


def test_adp_wavelength_not_increasing(tmp_path: Path) -> None:
    wave = np.array([4000.0, 4000.01, 4000.01, 4000.03])
    path = _table_file(tmp_path / "flat.fits", [_array_col("WAVE", wave), _array_col("FLUX", wave)])
    with pytest.raises(SpectrumFileError, match=r"flat\.fits.*not strictly increasing"):
        read_spectrum(path)


def test_adp_unknown_wavelength_unit(tmp_path: Path) -> None:
    wave = np.arange(4.0) + 1
    cols = [_array_col("WAVE", wave, unit="Hz"), _array_col("FLUX", wave)]
    with pytest.raises(SpectrumFileError, match="unsupported wavelength unit 'Hz'"):
        read_spectrum(_table_file(tmp_path / "hz.fits", cols))


def test_adp_two_rows_refused(tmp_path: Path) -> None:
    wave = np.arange(8.0).reshape(2, 4) + 1
    cols = [fits.Column("WAVE", "4D", array=wave), fits.Column("FLUX", "4D", array=wave)]
    path = _table_file(tmp_path / "rows.fits", cols)
    with pytest.raises(SpectrumFileError, match="one row, found 2"):
        read_spectrum(path)


def test_no_spectrum_hdu(tmp_path: Path) -> None:
    path = tmp_path / "image2d.fits"
    fits.PrimaryHDU(data=np.ones((3, 4), dtype=np.float32)).writeto(path)
    with pytest.raises(SpectrumFileError, match=r"image2d\.fits.*no spectrum HDU found"):
        read_spectrum(path)


def test_linear_image_with_cd_and_crpix(tmp_path: Path) -> None:
    flux = np.arange(6, dtype=">f8")  # big-endian, as FITS stores it
    path = _image_file(
        tmp_path / "lib.fits",
        flux,
        {"CRVAL1": 6000.0, "CD1_1": 0.5, "CRPIX1": 3.0, "CUNIT1": "Angstrom"},
    )
    spec = read_spectrum(path)
    np.testing.assert_allclose(spec.wavelength, 6000.0 + 0.5 * (np.arange(6) + 1 - 3))
    assert spec.flux.dtype == np.float64 and spec.flux.dtype.isnative
    assert spec.meta["format"] == "linear" and spec.object == "lib"


def test_linear_image_in_nm(tmp_path: Path) -> None:
    path = _image_file(
        tmp_path / "nm.fits",
        np.ones(3, np.float32),
        {"CRVAL1": 500.0, "CDELT1": 0.1, "CUNIT1": "nm"},
    )
    np.testing.assert_allclose(read_spectrum(path).wavelength, [5000.0, 5001.0, 5002.0])


def test_log_linear_dc_flag(tmp_path: Path) -> None:
    path = _image_file(
        tmp_path / "log.fits", np.ones(4, np.float32), {"CRVAL1": 3.6, "CDELT1": 1e-4, "DC-FLAG": 1}
    )
    expected = 10.0 ** (3.6 + 1e-4 * np.arange(4))
    np.testing.assert_allclose(read_spectrum(path).wavelength, expected, rtol=1e-12)


def test_wave_log_ctype_refused(tmp_path: Path) -> None:
    cards = {"CRVAL1": 3.6, "CDELT1": 1e-4, "CTYPE1": "WAVE-LOG"}
    path = _image_file(tmp_path / "wlog.fits", np.ones(4, np.float32), cards)
    with pytest.raises(SpectrumFileError, match="non-linear wavelength axis CTYPE1='WAVE-LOG'"):
        read_spectrum(path)


def test_negative_step_refused(tmp_path: Path) -> None:
    cards = {"CRVAL1": 5000.0, "CDELT1": -1.0}
    path = _image_file(tmp_path / "desc.fits", np.ones(4, np.float32), cards)
    with pytest.raises(SpectrumFileError, match="not strictly increasing"):
        read_spectrum(path)


def test_odd_header_values_give_nan(tmp_path: Path) -> None:
    cards = {
        "CRVAL1": 5000.0,
        "CDELT1": 1.0,
        "RA": "17:24:51.9",
        "DEC": True,
        "EXPTIME": "300",
        "OBJECT": "   ",
        "HIERARCH ESO TEL AIRM END": 1.5,
    }
    path = _image_file(tmp_path / "odd.fits", np.ones(3, np.float32), cards)
    meta = read_spectrum(path).meta
    assert math.isnan(meta["ra"]) and math.isnan(meta["dec"])
    assert meta["exptime"] == 300.0
    assert meta["airmass"] == 1.5  # only one of START/END present
    assert read_spectrum(path).object == "odd"


def test_unparsable_card_gives_nan(tmp_path: Path) -> None:
    path = _image_file(
        tmp_path / "card.fits", np.ones(3, np.float32), {"CRVAL1": 5000.0, "CDELT1": 1.0}
    )
    raw = bytearray(path.read_bytes())
    end = raw.index(b"END" + b" " * 77)
    raw[end : end + 160] = b"EXPTIME = 12.5.3 / not a number".ljust(80) + b"END".ljust(80)
    path.write_bytes(bytes(raw))
    spec = read_spectrum(path)  # pytest turns any escaping warning into an error
    assert math.isnan(spec.meta["exptime"]) and spec.flux.size == 3


# ----------------------------------------------------------------------- write_adp


SYNTH_HEADER = {
    "object": "SYNTH-0001",
    "ra": 12.5,
    "dec": -45.25,
    "mjd_obs": 55000.123456789,
    "exptime": 900.0,
    "airmass": 1.234,
    "berv": -12.3456789012,
    "targ_rv": 33.3,
    "snr": 55.5,
}


def _synthetic(n: int = 2001) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    wave = 3785.0 + 0.01 * np.arange(n)
    flux = (1000.0 + 50.0 * rng.standard_normal(n)).astype(np.float32)
    err = np.full(n, 30.0, np.float32)
    return wave, flux, err


@pytest.mark.parametrize("filename", ["ADP.synth.fits", "ADP.synth.fits.gz"])
def test_write_adp_roundtrip(tmp_path: Path, filename: str) -> None:
    wave, flux, err = _synthetic()
    path = tmp_path / filename
    write_adp(path, wave, flux, SYNTH_HEADER, error=err)
    spec = read_spectrum(path)
    assert spec.id == "ADP.synth" and spec.object == "SYNTH-0001"
    np.testing.assert_array_equal(spec.wavelength, wave)
    np.testing.assert_array_equal(spec.flux, flux)
    np.testing.assert_array_equal(spec.error, err)
    expected = {k: v for k, v in SYNTH_HEADER.items() if k != "object"}
    assert spec.meta == {**expected, "format": "adp"}


def test_write_adp_layout(tmp_path: Path) -> None:
    wave, flux, _ = _synthetic(11)
    path = tmp_path / "ADP.layout.fits"
    write_adp(path, wave, flux, SYNTH_HEADER)
    with fits.open(path) as hdul:
        head, table = hdul[0].header, hdul["SPECTRUM"]
        assert head["WAVELMIN"] == pytest.approx(378.5) and head["WAVELMAX"] == pytest.approx(
            378.51
        )
        assert head["SPEC_RES"] == 115000.0
        assert head["HIERARCH ESO TEL AIRM START"] == head["HIERARCH ESO TEL AIRM END"] == 1.234
        assert [c.name for c in table.columns] == ["WAVE", "FLUX", "ERR"]
        assert [c.format for c in table.columns] == ["11D", "11E", "11E"]
        assert table.columns["WAVE"].unit == "Angstrom" and len(table.data) == 1
        assert np.isnan(table.data["ERR"][0]).all()  # no error given: NaN, as in the archive


def test_write_adp_missing_and_extra_keys(tmp_path: Path) -> None:
    wave, flux, _ = _synthetic(11)
    path = tmp_path / "ADP.sparse.fits"
    header = {"ra": 1.0, "berv": float("nan"), "snr": None, "HIERARCH ESO OBS PROG ID": "X"}
    write_adp(path, wave, flux, header)
    spec = read_spectrum(path)
    assert spec.meta["ra"] == 1.0 and spec.object == "ADP.sparse"
    assert math.isnan(spec.meta["berv"]) and math.isnan(spec.meta["snr"])
    assert fits.getval(path, "HIERARCH ESO OBS PROG ID") == "X"


def test_write_adp_all_nan_flux_still_reads(tmp_path: Path) -> None:
    # The reader does not judge content: quarantining NaN flux is preprocessing's job.
    wave, flux, _ = _synthetic(101)
    path = tmp_path / "ADP.nan.fits"
    write_adp(path, wave, np.full_like(flux, np.nan), SYNTH_HEADER)
    spec = read_spectrum(path)
    assert np.isnan(spec.flux).all() and spec.flux.size == 101


def test_write_adp_to_stream_and_rewrite_real(tmp_path: Path, adp: RawSpectrum) -> None:
    stream = io.BytesIO()
    header = {**adp.meta, "object": adp.object}  # 'format' is ignored by the writer
    write_adp(stream, adp.wavelength, adp.flux, header)
    stream.seek(0)
    _assert_same(read_spectrum(stream, name=ADP.name), adp)


@pytest.mark.parametrize(
    ("wave", "flux"),
    [
        (np.array([1.0, 2.0, 3.0]), np.ones(2)),
        (np.array([1.0, 1.0, 3.0]), np.ones(3)),
        (np.array([1.0, np.nan, 3.0]), np.ones(3)),
        (np.ones((2, 2)), np.ones((2, 2))),
    ],
)
def test_write_adp_rejects_bad_arrays(tmp_path: Path, wave: np.ndarray, flux: np.ndarray) -> None:
    with pytest.raises(ValueError):
        write_adp(tmp_path / "bad.fits", wave, flux, {})
