"""Labels tables: keys, duplicates, placeholders and text, read and joined at ingest."""

import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from specray.data.ingest import ingest
from specray.data.labels import LabelsError, load_labels
from specray.placeholders import is_sentinel
from specray.spectra.grid import named_grid
from tests.helpers import TOY_GRID, toy_spectra, write_linear_fits
from tests.store.test_ingest import read_store


def write_csv(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def value(table, key: str, column: str) -> float:
    """A label value, NaN where the table has none (lookup leaves missing cells out)."""
    return table.lookup(key, "").get(column, np.nan)


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_an_id_column_in_any_case_joins_by_id_and_names_map_onto_the_schema(tmp_path, caplog):
    uri = write_csv(
        tmp_path / "labels.csv",
        "ID,Teff,RV,mass\nstar-a.fits,6100,-30.5,1.1\nstar-b,3480,-9.2,0.3\n",
    )
    table = load_labels(uri)
    assert table.key == "id" and table.columns == ("teff", "rv", "mass")
    assert table.extra_labels == ("mass",)
    assert table.lookup("star-a", "whatever") == {"teff": 6100.0, "rv": -30.5, "mass": 1.1}
    assert table.lookup("star-b", "") == {"teff": 3480.0, "rv": -9.2, "mass": 0.3}
    assert table.lookup("star-c", "") == {}
    assert warnings_of(caplog) == []


def test_without_an_id_the_join_is_by_object_and_per_epoch_columns_are_refused(tmp_path, caplog):
    uri = write_csv(tmp_path / "labels.csv", "Object,teff,rv,snr\nHD 1,5800,12.0,80\n")
    table = load_labels(uri)
    assert table.key == "object" and table.columns == ("teff",)
    assert table.lookup("any-epoch", " HD 1 ") == {"teff": 5800.0}
    messages = warnings_of(caplog)
    assert any("no 'id' column" in m and uri in m for m in messages)
    assert any("per-epoch column(s) ['rv', 'snr'] are NOT joined" in m for m in messages)


def test_object_join_on_request_and_id_insisted_on(tmp_path):
    uri = write_csv(tmp_path / "labels.csv", "id,object,teff\ns1,HD 1,5800\ns2,HD 1,5800\n")
    by_object = load_labels(uri, key="object")
    assert by_object.key == "object" and by_object.lookup("s9", "HD 1") == {"teff": 5800.0}
    no_id = write_csv(tmp_path / "no_id.csv", "object,teff\nHD 1,5800\n")
    with pytest.raises(LabelsError, match=r"no_id\.csv: a labels table needs an 'id'"):
        load_labels(no_id, key="id")
    no_key = write_csv(tmp_path / "no_key.csv", "star,teff\nHD 1,5800\n")
    with pytest.raises(LabelsError, match=r"no_key\.csv: .*it has \['star', 'teff'\]"):
        load_labels(no_key)


def test_duplicate_ids_are_an_error_naming_the_file_and_the_keys(tmp_path, caplog):
    uri = write_csv(
        tmp_path / "dups.csv", "id,teff\na,5000\nb,6000\na,5100\nc,4000\nb,6000\nc,4100\n"
    )
    with pytest.raises(LabelsError, match=r"dups\.csv: 2 id value\(s\) .* e\.g\. 'a', 'c'"):
        load_labels(uri)
    same = write_csv(tmp_path / "same.csv", "id,teff\na,5000\nb,6000\na,5000\n")
    assert load_labels(same).lookup("a", "") == {"teff": 5000.0}
    assert any("1 duplicated identical row(s) dropped" in m for m in warnings_of(caplog))


def test_one_non_numeric_cell_is_missing_and_the_column_stays(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="specray.data.labels")
    uri = write_csv(
        tmp_path / "labels.csv",
        "id,teff,logg,sptype,empty\na,5800,4.4,G2V,\nb,57OO,4.5,K0V,\nc,4900,N/A,K2V,\nd,6100,?,F8,\n",
    )
    table = load_labels(uri)
    assert table.columns == ("teff", "logg", "sptype") and table.text_columns == ("sptype",)
    teff = {k: value(table, k, "teff") for k in "abcd"}
    logg = {k: value(table, k, "logg") for k in "abcd"}
    assert teff["a"] == 5800.0 and np.isnan(teff["b"]) and teff["d"] == 6100.0
    assert logg["a"] == 4.4 and np.isnan(logg["c"]) and np.isnan(logg["d"])
    messages = warnings_of(caplog)
    assert any("'teff': 1 cell(s) are not numbers ('57OO', row 2)" in m for m in messages)
    infos = [r.getMessage() for r in caplog.records]
    assert any("column 'sptype' is text: a categorical label of 4 categories" in m for m in infos)
    assert any("column 'empty' holds no values; ignored" in m for m in infos)
    assert not any("'logg'" in m for m in messages)  # N/A and ? are plain placeholders


def test_a_text_column_is_a_categorical_label_and_a_text_schema_column_is_refused(tmp_path, caplog):
    uri = write_csv(
        tmp_path / "labels.csv",
        "id,Teff,sptype,mass\n"
        "a,hot, G2V ,1.0\nb,cool,K0V,0.8\nc,hot,N/A,1.2\nd,warm,,0.9\ne,cool,5,1.1\n"
        "a,hot,G2V,1.0\n",  # an identical duplicate row
    )
    table = load_labels(uri)
    assert table.columns == ("sptype", "mass") and table.text_columns == ("sptype",)
    assert table.extra_labels == ("sptype", "mass")
    assert table.lookup("a", "") == {"sptype": "G2V", "mass": 1.0}  # stripped
    assert table.lookup("c", "") == {"mass": 1.2}  # placeholder and blank text: missing
    assert table.lookup("d", "") == {"mass": 0.9}
    assert table.lookup("e", "") == {"sptype": "5", "mass": 1.1}  # a number in a text column
    messages = warnings_of(caplog)
    assert any(
        "column 'Teff' is text" in m and "'teff' is a numeric column of the store; ignored" in m
        for m in messages
    )
    assert any("1 duplicated identical row(s) dropped" in m for m in messages)
    clash = write_csv(tmp_path / "clash.csv", "id,sptype\na,G2V\na,K0V\n")
    with pytest.raises(LabelsError, match=r"clash\.csv: 1 id value\(s\) .* e\.g\. 'a'"):
        load_labels(clash)


def test_placeholder_values_are_missing_but_real_values_that_look_alike_stay(tmp_path, caplog):
    rng = np.random.default_rng(1)
    n = 40
    feh = np.round(rng.normal(0.0, 0.2, n), 2).astype(object)
    feh[[3, 7, 11]] = 9999
    feh[20] = -99.9
    teff = np.round(rng.uniform(4000, 12000, n)).astype(object)
    teff[5] = 9999  # a real 9999 K star inside the column's range
    teff[6] = 99999
    rv = rng.normal(0, 40, n)
    rv[8] = np.inf
    rows = "\n".join(f"s{i},{feh[i]},{teff[i]},{rv[i]}" for i in range(n))
    table = load_labels(write_csv(tmp_path / "cat.csv", f"id,feh,teff,rv\n{rows}\n"))
    got = {c: np.array([value(table, f"s{i}", c) for i in range(n)]) for c in table.columns}
    assert np.isnan(got["feh"]).sum() == 4 and np.nanmax(np.abs(got["feh"])) < 1
    assert got["teff"][5] == 9999 and np.isnan(got["teff"]).sum() == 1
    assert np.isnan(got["teff"][6]) and np.isnan(got["rv"][8])
    messages = warnings_of(caplog)
    assert any(
        "'feh': 4 placeholder value(s) treated as missing (9999 x3, -99.9 x1)" in m
        for m in messages
    )
    assert any("'teff': 1 placeholder value(s)" in m for m in messages)
    assert any("'rv': 1 non-finite value(s)" in m for m in messages)


def test_sentinel_shapes():
    values = np.array([99, -99, 99.9, -999.9, 9999, 99999, -9999, 999.99, 98, 100, 9990, 0.99])
    expected = [True] * 8 + [False] * 4
    assert is_sentinel(values).tolist() == expected


def test_parquet_tables_follow_the_same_rules(tmp_path):
    path = tmp_path / "labels.parquet"
    table = pa.table(
        {"Id": ["a", "b", "c"], "teff": ["5800", "n/a", "6100"], "feh": [0.1, 9999.0, -0.2]}
    )
    pq.write_table(table, path)
    labels = load_labels(str(path))
    assert labels.key == "id" and labels.columns == ("teff", "feh")
    assert labels.lookup("a", "") == {"teff": 5800.0, "feh": 0.1}
    assert labels.lookup("b", "") == {}  # n/a and 9999: nothing to fill


# ------------------------------------------------------------ joined at ingest (Ray)


@pytest.fixture
def two_epochs_of_one_star(tmp_path):
    """STAR-A observed twice (rv -20 and +35 km/s), STAR-B once: linear-WCS FITS files."""
    grid = named_grid(TOY_GRID)
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    epochs = {"a-e0": ("STAR-A", -20.0), "a-e1": ("STAR-A", 35.0), "b-e0": ("STAR-B", 5.0)}
    for identifier, (obj, rv) in epochs.items():
        flux = toy_spectra(np.array([rv]), np.array([5000.0]), grid)[0]
        write_linear_fits(
            raw / f"{identifier}.fits", grid, flux + rng.normal(0, 0.01, flux.size), obj
        )
    return raw


@pytest.mark.usefixtures("ray_session")
def test_per_epoch_rv_is_never_given_to_the_wrong_epoch(two_epochs_of_one_star, tmp_path, caplog):
    raw = two_epochs_of_one_star
    by_object = write_csv(
        tmp_path / "objects.csv", "object,teff,rv\nSTAR-A,5000,7.5\nSTAR-B,6000,5.0\n"
    )
    report = ingest(str(raw), str(tmp_path / "s1"), grid=TOY_GRID, labels=by_object)
    assert (report.ingested, report.labelled) == (3, 3)
    _, table = read_store(str(tmp_path / "s1"))
    assert table["id"].to_pylist() == ["a-e0", "a-e1", "b-e0"]
    assert table["teff"].to_pylist() == [5000.0, 5000.0, 6000.0]
    assert np.isnan(table["rv"].to_numpy()).all()  # not STAR-A's 7.5 on both epochs
    assert any("['rv'] are NOT joined" in m for m in warnings_of(caplog))

    by_id = write_csv(tmp_path / "ids.csv", "ID,rv\na-e0,-20\na-e1,35\nb-e0,5\n")
    ingest(str(raw), str(tmp_path / "s2"), grid=TOY_GRID, labels=by_id)
    _, table = read_store(str(tmp_path / "s2"))
    assert table["rv"].to_pylist() == [-20.0, 35.0, 5.0]


@pytest.mark.usefixtures("ray_session")
def test_labels_that_match_nothing_are_reported(two_epochs_of_one_star, tmp_path, caplog):
    labels = write_csv(tmp_path / "labels.csv", "id,teff\nHD 1,5000\nHD 2,6000\n")
    report = ingest(str(two_epochs_of_one_star), str(tmp_path / "s"), grid=TOY_GRID, labels=labels)
    assert (report.ingested, report.labelled) == (3, 0)
    assert "labels: 0 of 3 spectra found a label row" in report.summary()
    expected = "0 of 3 spectra found a label row (joined by id); keys look like 'HD 1', 'HD 2'"
    assert any(expected in m and "ids like 'a-e0'" in m for m in warnings_of(caplog))


def test_csv_ids_keep_leading_zeros(tmp_path):
    rows = "".join(f"{i:06d},{5000 + i}\n" for i in range(200))
    table = load_labels(write_csv(tmp_path / "ids.csv", f"id,teff\n{rows}"))
    assert table.lookup("000007", "") == {"teff": 5007.0}
    assert table.lookup("7", "") == {}
