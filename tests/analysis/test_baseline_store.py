"""The PCA baseline's streaming pass over a real store (Ray Data), against a full-batch PCA."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.decomposition import PCA

from specray import schema, storage
from specray.analysis.baseline import fill_masked, masked_l1
from specray.analysis.baseline_store import pca_baseline_pass
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
    flux = schema.tensor_column_to_numpy(table["flux"]).astype(np.float64)[order]
    return flux, schema.tensor_column_to_numpy(table["mask"])[order]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_streamed_pca_of_the_selected_spectra_equals_full_batch_pca(tmp_path, s3_bucket, where):
    store = str(tmp_path / "store") if where == "local" else f"{s3_bucket}/store"
    truth = write_toy_store(store, n_objects=40, epochs=2, shards=3)
    ids = [name for name in truth["id"] if name.endswith("-e1")][::-1] + ["NOT-IN-STORE"]
    result = pca_baseline_pass(store, ids, n_components=3, batch_size=7)

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
