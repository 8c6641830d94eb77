"""The PCA baseline's streaming pass over a real store (Ray Data), against a full-batch PCA."""

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.decomposition import PCA

from specray import schema, storage
from specray.analysis.analyze import analyze
from specray.analysis.baseline import fill_masked, masked_l1
from specray.analysis.baseline_store import pca_baseline_pass
from specray.config import AnalysisConfig
from specray.data.store import open_store
from tests.helpers import write_toy_store

pytestmark = pytest.mark.usefixtures("ray_session")


def read_flux(store_uri, ids):
    """(flux, mask) of the spectra ``ids`` in that order, read directly with pyarrow."""
    tables = []
    for shard in open_store(store_uri).shard_uris():
        fs, path = storage.arrow_filesystem(shard)
        tables.append(pq.read_table(path, columns=["id", "flux", "mask"], filesystem=fs))
    table = pa.concat_tables(tables)
    row = {name: i for i, name in enumerate(table["id"].to_pylist())}
    order = [row[name] for name in ids]
    length = open_store(store_uri).grid.length
    flux = schema.decode_flux(table["flux"]).astype(np.float64)[order]
    return flux, schema.decode_mask(table["mask"], length)[order]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_streamed_pca_of_the_selected_spectra_equals_full_batch_pca(
    tmp_path, s3_bucket, where, progress_shown, capsys
):
    store = str(tmp_path / "store") if where == "local" else f"{s3_bucket}/store"
    truth = write_toy_store(store, n_objects=40, epochs=2, shards=3)
    ids = [name for name in truth["id"] if name.endswith("-e1")][::-1] + ["NOT-IN-STORE"]
    result = pca_baseline_pass(store, ids, n_components=3, batch_size=7)
    shown = capsys.readouterr().err  # both passes over the 40 stored spectra, counted
    assert re.search(r"^PCA fit: 40 spectra in ", shown, re.MULTILINE), shown
    assert re.search(r"^PCA score: 40 spectra in ", shown, re.MULTILINE), shown

    assert list(result.ids) == ids and result.found.tolist() == [True] * 40 + [False]
    assert np.all(np.isnan(result.scores[-1])) and result.model_l1 is None
    flux, mask = read_flux(store, ids[:-1])
    filled = fill_masked(flux, mask)
    full = PCA(3, svd_solver="full").fit(filled)
    np.testing.assert_allclose(
        result.explained_variance_ratio, full.explained_variance_ratio_, rtol=1e-4
    )
    scores = full.transform(filled)
    for j in range(3):  # components are defined up to sign
        sign = np.sign(scores[:, j] @ result.scores[:-1, j])
        np.testing.assert_allclose(result.scores[:-1, j], sign * scores[:, j], atol=1e-4)
    l1 = masked_l1(full.inverse_transform(scores), flux, mask)
    np.testing.assert_allclose(result.pca_l1[:-1], l1, rtol=1e-4)
    assert np.all(result.snr[:-1] == 100.0)


def test_analyze_reports_live_nodes_against_pca(tmp_path):
    """Planted latents (z0 = rv, z3 = teff, the rest collapsed) of a real store's spectra:
    ``baseline`` in analysis.json, its report section and figure, and the summary line."""
    store = str(tmp_path / "store")
    truth = write_toy_store(store, n_objects=60, epochs=1, shards=2)
    rng = np.random.default_rng(0)
    n = len(truth["id"])
    mu = rng.normal(0, 0.001, (n, 6))
    mu[:, 0] = truth["rv"] / 100 + rng.normal(0, 0.01, n)
    mu[:, 3] = (truth["teff"] - 5000) / 1000 + rng.normal(0, 0.01, n)
    columns = {"id": truth["id"], "object": truth["object"], "mu": mu,
               "rv": truth["rv"], "teff": truth["teff"], "snr": np.full(n, 100.0)}  # fmt: skip
    path = tmp_path / "latents.parquet"
    table_schema = schema.latent_schema(
        6, ("rv", "teff", "snr"), provenance={"store": store}, logvar=False
    )
    pq.write_table(schema.latent_table(columns, table_schema), path)
    config = AnalysisConfig(labels=["rv", "teff"], permutations=200, ci_resamples=10)
    summary = analyze(str(tmp_path / "out"), config, latents=str(path))

    result = json.loads((tmp_path / "out" / "analysis.json").read_text())
    base = result["baseline"]
    assert result["informative_nodes"] == [0, 3] == base["nodes"]
    assert base["n_components"] == 2 and base["n_spectra"] == 60 and base["store"] == store
    assert len(base["explained_variance_ratio"]) == 2
    for label in ("rv", "teff"):
        entry = base["labels"][label]
        assert entry["n"] == 60 and entry["latents"]["r2"] > 0.9
        assert {"latents", "pca", "both", "best_node", "best_pc"} <= set(entry)
    assert base["labels"]["rv"]["best_node"]["node"] == 0
    assert base["labels"]["teff"]["best_node"]["node"] == 3
    assert base["reconstruction"]["model"] is None  # no model given
    pca = base["reconstruction"]["pca"]
    assert pca["n"] == 60 and pca["median_l1_over_noise"] >= 0.9  # noise sigma 0.01 = 1/snr
    assert any("reconstruction needs the model" in w for w in result["warnings"])
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Does the latent space know more than PCA?" in page and 'id="fig-baseline"' in page
    assert "baseline" in [entry["name"] for entry in result["figures"]]
    assert "latents vs PCA (k=2, k-NN R^2): rv " in summary.summary()
