"""``specray analyze``: planted latents, an end-to-end run on a trained model, grid checks."""

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from specray import progress, schema
from specray.analysis.analyze import analyze
from specray.analysis.attribution import label_kinds
from specray.analysis.encode import GridMismatchError, encode_store
from specray.analysis.latents import LatentTable, read_latents
from specray.analysis.selection import select
from specray.analysis.wavelengths import decoder_sensitivity, node_sensitivity
from specray.cli import main
from specray.config import AnalysisConfig, Config, load_config
from specray.data.ingest import ingest
from specray.data.reader import read_rows
from specray.data.store import StoreError, open_or_create_store, open_store
from specray.model.checkpoint import load_trained_model
from specray.spectra.grid import named_grid
from specray.train.trainer import train
from tests.helpers import TOY_GRID, TOY_MODEL, toy_spectra, write_linear_fits, write_toy_store

pytestmark = pytest.mark.usefixtures("ray_session")

KEYS = {
    "n_spectra", "n_objects", "n_selected", "latent_dim", "labels", "selection",
    "informative_nodes", "dispersion", "screen", "mi", "label_nodes", "node_independence",
    "histogram_mi", "anomalies", "permutations", "config", "figures", "warnings", "source",
    "training", "reconstruction_examples", "provenance", "verdict",
}  # fmt: skip
IMG = '<img src="data:image/png;base64,'


def planted_table(path, n_objects=400, n_dup=100, seed=1):
    """12 nodes: z2 = f(teff) monotone, z7 = g(rv) anti-symmetric (not monotone), z5 and z9
    alive but label-free, z11 spread by 0.06 with a posterior width of 1 (live by the
    paper's MAD, not by information), the rest collapsed. ``n_dup`` objects have a second,
    lower-SNR spectrum (selection must skip it), five of which sit far out in z5 and z9
    (the isolation forest must rank them first). One teff is a 5-sigma outlier; logg is a
    label no node tracks, with the placeholder 9999 for 30 single-spectrum stars."""
    rng = np.random.default_rng(seed)
    rv = rng.uniform(-100, 100, n_objects)
    teff = rng.uniform(3500, 7000, n_objects)
    teff[0] = 60_000.0
    logg = rng.normal(4.3, 0.3, n_objects)
    mu = rng.normal(0.0, 0.005, (n_objects, 12))
    mu[:, 2] = 2.4 - 4.4 * (np.minimum(teff, 7000) - 3500) / 3500 + rng.normal(0, 0.3, n_objects)
    mu[:, 7] = -rv / 30 * np.exp(-((rv / 70) ** 2)) + rng.normal(0, 0.2, n_objects)
    mu[:, [5, 9]] = rng.normal(0.0, 0.5, (n_objects, 2))
    mu[:, 11] = rng.normal(0.0, 0.06, n_objects)
    logg[n_dup + 1 : n_dup + 31] = 9999.0
    dup = np.arange(1, n_dup + 1)
    mu_dup = mu[dup] + rng.normal(0, 0.05, (n_dup, 12))
    mu_dup[:5, 5] = [4.0, -4.5, 5.0, -5.5, 6.0]
    mu_dup[:5, 9] = [-4.0, 4.5, 5.0, -5.5, 6.0]
    suffix = ["-odd"] * 5 + ["-dup"] * (n_dup - 5)
    objects = np.array([f"STAR-{i:04d}" for i in range(n_objects)])
    columns = {
        "id": [f"{o}-a" for o in objects]
        + [o + x for o, x in zip(objects[dup], suffix, strict=True)],
        "object": np.concatenate([objects, objects[dup]]),
        "mu": np.vstack([mu, mu_dup]),
        "rv": np.concatenate([rv, rv[dup]]),
        "teff": np.concatenate([teff, teff[dup]]),
        "logg": np.concatenate([logg, logg[dup]]),
        "snr": np.concatenate([np.full(n_objects, 150.0), np.full(n_dup, 20.0)]),
    }
    logvar = np.zeros_like(columns["mu"])
    logvar[:, [2, 5, 7, 9]] = np.log(0.01)
    columns["logvar"] = logvar
    table_schema = schema.latent_schema(12, ["rv", "teff", "logg", "snr"])
    pq.write_table(schema.latent_table(columns, table_schema), path)
    return columns


def check_report(out, result):
    page = (out / "report.html").read_text()
    assert not re.search(r'(src|href)="(?!data:|#)', page), "the report must be self-contained"
    assert "http://" not in page and "https://" not in page
    assert page.count(IMG) == len(result["figures"])
    for entry in result["figures"]:
        assert f'id="fig-{entry["name"]}"' in page
        assert (out / entry["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return page


def test_planted_latents_give_exactly_the_planted_nodes(tmp_path, capsys):
    path = tmp_path / "planted.parquet"
    planted_table(path)
    out = tmp_path / "out"
    argv = ["-q", "analyze", "--latents", str(path), "--out", str(out)]
    argv += ["--labels", "rv,teff,logg,feh", "--permutations", "400", "--seed", "3"]
    argv += ["--set", "analysis.ci_resamples=40", "--set", "analysis.attribution_permutations=239"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "analysis.json").read_text())
    assert set(result) >= KEYS
    assert (result["n_spectra"], result["n_objects"], result["n_selected"]) == (500, 400, 400)
    assert result["latent_dim"] == 12 and result["labels"] == ["rv", "teff", "logg"]
    assert result["selection"]["per_label"]["teff"]["n_clipped"] == 1
    assert result["selection"]["per_label"]["logg"]["n_placeholder"] == 30
    assert result["selection"]["per_label"]["logg"]["n"] == 370
    assert any("'logg': 30 placeholder" in w for w in result["warnings"])
    assert result["informative_nodes"] == [2, 5, 7, 9]
    assert [d["node"] for d in result["dispersion"] if d["informative"]] == [2, 5, 7, 9]
    assert all(d["kl"] is not None for d in result["dispersion"])
    live = result["live_nodes"]
    assert live["information"]["nodes"] == [2, 5, 7, 9] and live["information"]["analysed"]
    assert live["mad"]["nodes"] == [2, 5, 7, 9, 11] and not live["mad"]["analysed"]
    assert result["dispersion"][11]["live_mad"] and not result["dispersion"][11]["live_information"]
    assert any("z11" in w and "MAD threshold" in w for w in result["warnings"])
    assert result["permutations"]["floor"] == pytest.approx(1 / 401)
    corrected = result["histogram_mi"]["corrected"]["teff"]
    assert corrected[-1] == [None] * 12  # 160 bins > sqrt(2 x 399)
    assert np.argmax(corrected[0]) == 2  # z2 dominates the 5-bin row for teff

    assert len(result["mi"]) == 12 and result["permutations"]["used"] == 400
    assert result["permutations"]["resolvable"] is True
    significant = {(row["node"], row["label"]) for row in result["mi"] if row["significant"]}
    assert significant == {(2, "teff"), (7, "rv")}
    for row in result["mi"]:
        low, high = row["ci"]  # floored at 0, while KSG estimates can dip below it
        assert low <= max(row["mi"], 0.0) <= high and row["p_value"] <= row["p_adjusted"]
    nodes = {label: (hit or {}).get("node") for label, hit in result["label_nodes"].items()}
    assert nodes == {"rv": 7, "teff": 2, "logg": None}
    assert result["label_nodes"]["teff"]["mi"] > 0.5

    independence = np.array(result["node_independence"]["mi"], dtype=float)
    assert independence.shape == (4, 4) and np.nanmax(independence) < 0.1
    top = [entry["id"] for entry in result["anomalies"]["top"][:5]]
    assert all(name.endswith("-odd") for name in top)
    assert len(result["screen"]["pairs"]) == 36
    assert any("'feh' is not in the latent table" in w for w in result["warnings"])
    assert any("traversals need the model" in w for w in result["warnings"])

    names = [entry["name"] for entry in result["figures"]]
    assert names == [
        "dispersion", "label_histograms", "mi_heatmap", "mi_matrix", "scatter_rv", "scatter_teff", "scatter_logg",
        "independence",
    ]  # fmt: skip
    page = check_report(out, result)
    assert "rv: node 7" in printed and "teff: node 2" in printed and "report.html" in printed
    assert "adjusted p < " in printed  # at the floor: a bound, not a number
    assert "NOT RESOLVED" not in printed and "not resolved" not in page
    assert "4</b> of 12 nodes live by information" in page
    assert "5</b> of 12 nodes live by mad" in page


def test_unresolvable_permutations_are_said_in_the_headline(tmp_path, capsys):
    """B = 50 for 8 tests cannot resolve BH (needs 159): summary and report headline say
    so, instead of showing assignments the warnings contradict."""
    path = tmp_path / "planted.parquet"
    planted_table(path, n_objects=200, n_dup=10)
    out = tmp_path / "out"
    argv = ["-q", "analyze", "--latents", str(path), "--out", str(out), "--labels", "rv,teff"]
    argv += ["--permutations", "50", "--set", "analysis.ci_resamples=0"]
    argv += ["--set", "analysis.screen=false", "--set", "analysis.anomalies=0"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "analysis.json").read_text())
    perm = result["permutations"]
    assert (perm["requested"], perm["used"], perm["needed"], perm["n_tests"]) == (50, 50, 159, 8)
    assert perm["resolvable"] is False and any("B=50" in w for w in result["warnings"])
    assert "NOT RESOLVED: 50 permutations cannot resolve BH over 8 tests" in printed
    page = (out / "report.html").read_text()
    headline = page[page.index('<div class="headline">') :]
    assert headline.index("Significance not resolved") < headline.index("</div>")
    assert "&lt; 0.0196" in page  # p at the floor 1/51, shown as a bound


def test_selection_per_label_or_complete_cases():
    """Best-SNR spectrum per object; labels dropped/clipped one by one unless complete_cases."""
    n = 60
    objects = np.repeat([f"S{i:02d}" for i in range(n // 2)], 2)
    snr = np.tile([10.0, 50.0], n // 2)  # the second spectrum of each object is better
    rv = np.linspace(-50, 50, n)
    feh = np.where(np.arange(n) // 2 % 2 == 0, np.nan, 0.01 * np.arange(n))  # half the objects
    rv[3] = 1e4  # far out: clipped at 5 sigma
    table = LatentTable(
        "mem", objects, objects, np.zeros((n, 2)), None, {"rv": rv, "feh": feh, "snr": snr}
    )
    notes = []
    sel = select(table, AnalysisConfig(labels=["rv", "feh", "teff"]), notes)
    assert list(sel.rows) == list(range(1, n, 2))
    assert sel.info["per_label"]["rv"] == {
        "n_placeholder": 0,
        "n_finite": 30,
        "n_clipped": 1,
        "n": 29,
    }
    assert sel.info["per_label"]["feh"]["n"] == 15 and "feh" not in sel.labels  # < 20: skipped
    assert np.isnan(sel.labels["rv"][1]) and any("'teff' is not in" in w for w in notes)
    joint = select(table, AnalysisConfig(labels=["rv", "feh"], complete_cases=True), [])
    # the 15 objects with feh, best spectrum each; rv = 1e4 (row 3) is clipped: one mean/std
    # pass could not see it (one point in 15 cannot be 5 std out), median/MAD does
    assert list(joint.rows) == list(range(7, n, 4)) and joint.info["complete_cases"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained for one epoch on the toy store (as in tests/train)."""
    root = tmp_path_factory.mktemp("trained")
    store, run = str(root / "store"), str(root / "run")
    write_toy_store(store, n_objects=40, epochs=2, shards=2)
    overrides = TOY_MODEL + ["train.lr=0.003", "train.batch_size=16", "train.epochs=1"]
    train(store, run, load_config(overrides=overrides))
    return store, run


def test_end_to_end_from_a_trained_checkpoint(trained, tmp_path, capsys):
    store, run = trained
    out = tmp_path / "analysis"
    config = load_config(
        overrides=[
            "analysis.labels=[rv, teff]",
            "analysis.permutations=auto",  # enough to resolve BH
            "analysis.ci_resamples=20",
            # one epoch: MAD ~1e-4 and posteriors still ~N(0, 1); keep every node
            "analysis.information_threshold=0",
            "analysis.dispersion_threshold=0",
            "analysis.encode_batch_size=16",
        ]
    )
    summary = analyze(str(out), config, data=store, model=run)

    table = pq.read_table(out / "latents.parquet")
    assert table.num_rows == open_store(store).n_spectra() == 80
    assert table.schema.field("mu").type == schema.tensor_type(np.float32, 8)
    mu = schema.tensor_column_to_numpy(table["mu"])
    assert mu.shape == (80, 8) and schema.tensor_column_to_numpy(table["logvar"]).shape == (80, 8)
    assert schema.grid_from_schema(table.schema) == open_store(store).grid
    assert schema.latent_info(table.schema)["checkpoint"].startswith(run)
    shard = pq.read_table(open_store(store).shard_uris()[0])
    ids = table["id"].to_pylist()
    model = load_trained_model(run).model
    with torch.no_grad():
        flux = schema.decode_flux(shard["flux"][:4]).astype(np.float32)
        expected, _ = model.encode(torch.from_numpy(flux).unsqueeze(1))
    for k, spectrum_id in enumerate(shard["id"][:4].to_pylist()):
        row = ids.index(spectrum_id)
        np.testing.assert_allclose(mu[row], expected[k].numpy(), rtol=1e-4, atol=1e-5)
        assert table["teff"][row].as_py() == shard["teff"][k].as_py()
        assert table["rv"][row].as_py() == shard["rv"][k].as_py()

    result = json.loads((out / "analysis.json").read_text())
    assert set(result) >= KEYS and result == summary.result
    assert result["n_spectra"] == 80 and result["n_objects"] == 40 == result["n_selected"]
    assert result["informative_nodes"] and result["permutations"]["resolvable"] is True
    assert result["live_nodes"]["information"]["analysed"]  # logvar encoded: the default
    assert len(result["mi"]) == 2 * len(result["informative_nodes"])
    names = {entry["name"] for entry in result["figures"]}
    assert {"dispersion", "mi_heatmap", "mi_matrix", "scatter_rv", "scatter_teff"} <= names
    assert "traversals" in names
    assert ("independence" in names) == (len(result["informative_nodes"]) > 1)
    base = result["baseline"]  # the PCA baseline on the same 40 spectra, model L1 beside it
    assert base["n_components"] == len(result["informative_nodes"]) and base["n_spectra"] == 40
    assert base["reconstruction"]["model"]["n"] == base["reconstruction"]["pca"]["n"] == 40
    assert "baseline" in names and "latents vs PCA" in summary.summary()
    # Diagnosis: one epoch never leaves the KL-free warm-up (default start: step 5,000),
    # and the report says so before its headline.
    meta = load_trained_model(run).meta
    training = result["training"]
    assert training["steps"] == [entry.step for entry in meta.history]
    assert training["kl_weight"] == [0.0] * len(training["steps"])
    checks = {c["check"]: c for c in result["verdict"]["checks"]}
    assert checks["kl_weight"]["status"] == "problem" and result["verdict"]["status"] == "not fit"
    assert "NOT FIT TO INTERPRET" in summary.summary()
    examples = result["reconstruction_examples"]  # lowest, median and highest SNR selected
    best = {}  # the selection: each object's highest-SNR spectrum
    for obj, snr in zip(table["object"].to_pylist(), table["snr"].to_pylist(), strict=True):
        best[obj] = max(best.get(obj, -np.inf), snr)
    ranked = sorted(best.values())
    assert examples["snr"] == pytest.approx(
        [ranked[0], ranked[len(ranked) // 2], ranked[-1]], rel=1e-9
    )
    assert all(sigma > 0 for sigma in examples["robust_residual_sigma"])
    assert {"training", "reconstruction"} <= names
    # What each node reads: the Ray Data actors give the decoder's direct sensitivity.
    live = result["informative_nodes"]
    assert "node_wavelengths" in names and set(result["node_wavelengths"]["nodes"]) == {
        str(j) for j in live
    }
    best = {}
    for row, obj in enumerate(table["object"].to_pylist()):
        if table["snr"][row].as_py() > best.get(obj, (-np.inf, 0))[0]:
            best[obj] = (table["snr"][row].as_py(), row)
    chosen = mu[sorted(row for _, row in best.values())]
    direct = decoder_sensitivity(model, chosen, live, chosen[:, live].std(axis=0)) / len(chosen)
    progress.enable(True)
    try:
        via_ray = node_sensitivity(run, chosen, live)
    finally:
        progress.enable(False)
    shown = capsys.readouterr().err
    assert re.search(rf"^node wavelengths: {len(chosen)} spectra in ", shown, re.M), shown
    np.testing.assert_allclose(via_ray, direct, rtol=1e-4, atol=1e-7)
    for j, row in zip(live, direct, strict=True):
        assert result["node_wavelengths"]["nodes"][str(j)]["mean"] == pytest.approx(row.mean())
    prov = result["provenance"]
    assert all(prov["versions"][name] for name in ("specray", "torch", "ray", "numpy"))
    assert prov["store"]["n_spectra"] == 80 and prov["training_config"] == meta.config
    page = check_report(out, result)
    assert "whole grid" in page  # the toy grid holds none of the zoom windows
    assert page.index("NOT fit to interpret") < page.index("<h2>Headline")
    assert "report.html" in summary.summary()


def test_grid_mismatch_between_checkpoint_and_store_is_clear(trained, tmp_path):
    _, run = trained
    other = str(tmp_path / "other-store")
    open_or_create_store(other, named_grid("linear:6000:6102.3:0.1"))
    with pytest.raises(GridMismatchError, match=r"linear:5000:5102.3:0.1.*linear:6000:6102.3:0.1"):
        analyze(str(tmp_path / "out"), load_config(), data=other, model=run)
    assert not (tmp_path / "out" / "latents.parquet").exists()


def test_a_text_label_travels_from_the_labels_table_to_the_analysis(trained, tmp_path):
    """Spectral types written as text in a labels table: a string column in the store
    (missing cells null), carried through encoding, read by the analysis as categorical; a
    later table that gives numbers for the same column is refused, naming both."""
    _, run = trained
    grid = named_grid(TOY_GRID)
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(3)
    expected, rows = {}, ["id,sptype,mass"]
    for i in range(12):
        flux = toy_spectra(np.zeros(1), np.array([4000.0 + 250 * i]), grid)[0]
        write_linear_fits(
            raw / f"s{i:02d}.fits", grid, flux + rng.normal(0, 0.01, flux.size), f"S{i}"
        )
        expected[f"s{i:02d}"] = None if i == 5 else "KGF"[i // 4]
        rows.append(f"s{i:02d},{expected[f's{i:02d}'] or 'N/A'},{1 + i / 10}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    store = str(tmp_path / "store")
    assert (
        ingest(str(raw), store, grid=TOY_GRID, labels=str(tmp_path / "labels.csv")).ingested == 12
    )
    opened = open_store(store)
    assert opened.extra_labels == ("sptype", "mass") and opened.text_labels == ("sptype",)
    stored = read_rows(opened, ["id", "sptype", "mass"])
    assert stored.schema.field("sptype").type == pa.string()
    assert (
        dict(zip(stored["id"].to_pylist(), stored["sptype"].to_pylist(), strict=True)) == expected
    )

    (tmp_path / "numbers.csv").write_text("id,sptype\ns00,3\ns01,4\n")
    with pytest.raises(StoreError, match=r"'sptype' holds text in this store but numbers"):
        ingest(str(raw), store, grid=TOY_GRID, labels=str(tmp_path / "numbers.csv"))

    latents = read_latents(encode_store(store, run, str(tmp_path / "latents")))
    categories = latents.info["categories"]["sptype"]
    assert categories == ["F", "G", "K"]
    codes = {name: code for name, code in zip(latents.ids, latents.columns["sptype"], strict=True)}
    for name, kind in expected.items():
        assert np.isnan(codes[name]) if kind is None else categories[int(codes[name])] == kind
    kinds = label_kinds({"sptype": latents.columns["sptype"]}, list(latents.info["categories"]),
                        AnalysisConfig(labels=["sptype"]))  # fmt: skip
    assert kinds["sptype"]["kind"] == "categorical" and kinds["sptype"]["distinct_values"] == 3


def test_too_few_spectra_are_reported_not_fatal(tmp_path, ray_session):
    """Eight stars: every label and the independence matrix are skipped with a warning."""
    rng = np.random.default_rng(0)
    n, d = 8, 4
    mu = rng.normal(0, 0.001, (n, d))
    mu[:, :2] = rng.normal(0, 1.0, (n, 2))
    columns = {"id": [f"s{i}" for i in range(n)], "object": [f"o{i}" for i in range(n)],
               "mu": mu, "logvar": np.zeros((n, d)), "rv": rng.normal(size=n),
               "teff": rng.normal(5000, 500, n), "snr": np.full(n, 50.0)}  # fmt: skip
    path = tmp_path / "latents.parquet"
    pq.write_table(schema.latent_table(columns, schema.latent_schema(d, ("rv", "teff"))), path)
    summary = analyze(str(tmp_path / "out"), Config(), latents=str(path))
    result = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert result["informative_nodes"] == [0, 1] and result["mi"] == []
    assert any("only 8 values" in w for w in result["warnings"])
    assert any("independence not estimated" in w for w in result["warnings"])
    assert summary is not None


def test_label_kinds_and_attribution_in_analysis_json(tmp_path):
    """A text label (spectral class), a discrete numeric one and a continuous one: each
    detected (one overridden), each attributed with its estimator, reported in the JSON."""
    rng = np.random.default_rng(12)
    n = 200
    sptype = rng.integers(0, 4, n)
    teff = rng.uniform(4000, 6500, n)
    flag = rng.integers(0, 3, n).astype(float)  # three values: discrete, unrelated to mu
    mu = rng.normal(0.0, 0.005, (n, 4))
    mu[:, 1] = sptype + rng.normal(0, 0.3, n)
    mu[:, 3] = (teff - 5000) / 800 + rng.normal(0, 0.3, n)
    columns = {"id": [f"S{i}" for i in range(n)], "object": [f"S{i}" for i in range(n)],
               "mu": mu, "teff": teff, "flag": flag}  # fmt: skip
    table = schema.latent_table(columns, schema.latent_schema(4, ["teff", "flag"], logvar=False))
    table = table.append_column("sptype", pa.array(["OBAF"[c] for c in sptype]))
    path = tmp_path / "kinds.parquet"
    pq.write_table(table, path)
    cfg = AnalysisConfig(
        labels=["teff", "sptype", "flag"], permutations=120, ci_resamples=10, screen=False,
        anomalies=0, label_kinds={"teff": "continuous"}, attribution_permutations=120,
    )  # fmt: skip
    result = analyze(str(tmp_path / "out"), cfg, latents=str(path)).result
    kinds = result["label_kinds"]
    assert {name: k["kind"] for name, k in kinds.items()} == {
        "teff": "continuous", "sptype": "categorical", "flag": "discrete"
    }  # fmt: skip
    assert kinds["sptype"]["distinct_values"] == 4 and kinds["flag"]["distinct_values"] == 3
    assert result["informative_nodes"] == [1, 3]
    nodes = {label: (hit or {}).get("node") for label, hit in result["label_nodes"].items()}
    assert nodes == {"teff": 3, "sptype": 1, "flag": None}
    attribution = result["attribution"]
    assert attribution["nodes"]["1"]["best_label"] == "sptype"
    assert attribution["labels"]["flag"]["verdict"]["status"] == "none"
    page = (tmp_path / "out" / "report.html").read_text()
    assert "exclusive attribution" in page and "categorical" in page

    # The same from the command line, conditioned on the nuisance label: flag is given,
    # not attributed, and the nodes keep their labels.
    out = tmp_path / "conditioned"
    args = ["analyze", "--latents", str(path), "--out", str(out), "--labels", "teff,sptype",
            "--condition", "flag", "--permutations", "120",
            "--set", "analysis.ci_resamples=10", "--set", "analysis.screen=false",
            "--set", "analysis.anomalies=0", "--set", "analysis.attribution_permutations=120",
            "--set", "analysis.label_kinds={teff: continuous}"]  # fmt: skip
    assert main(args) == 0
    given = json.loads((out / "analysis.json").read_text())
    assert given["attribution"]["condition"] == ["flag"]
    assert set(given["attribution"]["labels"]) == {"teff", "sptype"}
    nodes = {label: (hit or {}).get("node") for label, hit in given["label_nodes"].items()}
    assert nodes == {"teff": 3, "sptype": 1}


def test_a_screened_node_gets_one_caveat_naming_all_its_labels():
    from specray.analysis.nodes import note_screened_nodes

    pair = {"significant": True, "p_adjusted": 0.001}
    screen = {"pairs": [
        {**pair, "node": 11, "label": "rv", "mi": 0.2},
        {**pair, "node": 11, "label": "teff", "mi": 0.4},
        {**pair, "node": 2, "label": "teff", "mi": 0.9},  # live: no caveat
        {**pair, "node": 5, "label": "feh", "mi": 0.3, "significant": False},
    ]}  # fmt: skip
    notes = []
    mad, information = np.full(12, 0.01), np.full(12, 0.02)
    note_screened_nodes(screen, [2, 7], mad, information, "information", notes)
    assert len(notes) == 1 and notes[0].startswith("node 11 is not live by the information")
    assert notes[0].index("teff (MI 0.400") < notes[0].index("rv (MI 0.200")
