"""The PCA baseline's statistics against planted truth (no Ray)."""

import numpy as np
import pytest
from sklearn.decomposition import PCA

from specray.analysis.baseline import (
    FILL_VALUE,
    StreamingPCA,
    compare_labels,
    fill_masked,
    pca_l1,
    reconstruction_summary,
    recovery_score,
)

PIXELS = np.linspace(0.0, 100.0, 1000)
LINES = (15.0, 32.0, 47.0, 61.0, 80.0)


def doppler_spectra(shift, rng, noise=0.01):
    """Five Gaussian absorption lines (width 0.4 px-units) all moved by ``shift``."""
    flux = np.ones((shift.size, PIXELS.size))
    for centre in LINES:
        flux -= 0.6 * np.exp(-0.5 * ((PIXELS[None] - centre - shift[:, None]) / 0.4) ** 2)
    return flux + rng.normal(0, noise, flux.shape)


def linear_spectra(labels, rng, noise=0.01):
    """Flux = 1 + sum_i label_i x basis_i + noise: labels linear in the spectra."""
    basis = rng.normal(0, 0.05, (labels.shape[1], PIXELS.size))
    return 1.0 + labels @ basis + rng.normal(0, noise, (labels.shape[0], PIXELS.size))


def full_pca_scores(flux, k):
    return PCA(k, svd_solver="full").fit_transform(flux)


def test_linear_labels_are_recovered_by_both():
    rng = np.random.default_rng(0)
    labels = rng.normal(0, 1, (500, 2))
    flux = linear_spectra(labels, rng)
    latents = labels + rng.normal(0, 0.05, labels.shape)  # a good latent space: the labels
    out = compare_labels(latents, [3, 8], full_pca_scores(flux, 2),
                         {"a": labels[:, 0], "b": labels[:, 1]})  # fmt: skip
    for name in ("a", "b"):
        for features in ("latents", "pca", "both"):
            score = out[name][features]
            assert score["r2"] > 0.9, (name, features, score)
            low, high = score["interval"]
            assert len(score["folds"]) == 5 and low <= score["r2"] <= high
        assert out[name]["best_pc"]["mi"] > 1.0
    assert out["a"]["best_node"]["node"] == 3 and out["b"]["best_node"]["node"] == 8


def test_a_shift_needs_many_components_but_one_latent():
    """Doppler shift of lines over more than their spacing: PC1 knows nothing of it."""
    rng = np.random.default_rng(1)
    shift = rng.uniform(-10, 10, 400)
    flux = doppler_spectra(shift, rng)
    latent = (shift + rng.normal(0, 0.1, shift.size))[:, None]
    one = compare_labels(latent, [0], full_pca_scores(flux, 1), {"rv": shift})["rv"]
    assert one["latents"]["r2"] > 0.95
    assert one["pca"]["r2"] < 0.3 and one["pca"]["interval"][1] < one["latents"]["interval"][0]
    assert one["best_node"]["mi"] > one["best_pc"]["mi"] + 1.0
    assert recovery_score(full_pca_scores(flux, 6), shift)["r2"] > 0.9  # PCA needs many


def test_labels_with_nan_use_only_their_rows():
    rng = np.random.default_rng(2)
    labels = rng.normal(0, 1, (200, 1))
    values = labels[:, 0].copy()
    values[::4] = np.nan
    flux = linear_spectra(labels, rng)
    unrelated = rng.normal(0, 1, 200)
    out = compare_labels(labels, [0], full_pca_scores(flux, 1), {"x": values, "u": unrelated})
    assert out["x"]["n"] == 150 and out["x"]["pca"]["r2"] > 0.9
    assert out["u"]["n"] == 200
    for features in ("latents", "pca", "both"):  # nothing to recover: R^2 at or below 0
        assert out["u"][features]["r2"] < 0.1


@pytest.mark.parametrize("batch", [1, 7, 64, 1000])
def test_streaming_pca_equals_full_batch_pca(batch):
    """Whatever the batch size, the incremental fit finds the full-batch components."""
    rng = np.random.default_rng(3)
    labels = rng.normal(0, 1, (300, 3)) * [3.0, 2.0, 1.0]  # distinct variances: a unique basis
    flux = linear_spectra(labels, rng, noise=0.005)
    stream = StreamingPCA(3, chunk_rows=50)
    for start in range(0, flux.shape[0], batch):
        stream.add(flux[start : start + batch])
    fitted = stream.finish()
    full = PCA(3, svd_solver="full").fit(flux)
    assert fitted.n_samples == 300
    np.testing.assert_allclose(fitted.mean, full.mean_, atol=1e-10)
    overlap = np.abs(np.sum(fitted.components * full.components_, axis=1))
    np.testing.assert_allclose(overlap, 1.0, atol=1e-6)
    np.testing.assert_allclose(fitted.explained_variance, full.explained_variance_, rtol=1e-6)
    np.testing.assert_allclose(
        fitted.explained_variance_ratio, full.explained_variance_ratio_, rtol=1e-6
    )


def test_streaming_pca_of_slowly_decaying_spectra_equals_full_batch_pca():
    """Doppler-shifted lines have no low-rank structure: the oversampled fit still agrees."""
    rng = np.random.default_rng(6)
    flux = doppler_spectra(rng.uniform(-10, 10, 400), rng)
    stream = StreamingPCA(4, chunk_rows=32)
    for start in range(0, 400, 25):
        stream.add(flux[start : start + 25])
    fitted = stream.finish()
    full = PCA(4, svd_solver="full").fit(flux)
    cosines = np.linalg.svd(fitted.components @ full.components_.T, compute_uv=False)
    np.testing.assert_allclose(cosines, 1.0, atol=2e-3)  # measured: >= 0.9994
    np.testing.assert_allclose(fitted.explained_variance, full.explained_variance_, rtol=1e-2)


def test_streaming_pca_needs_enough_spectra():
    stream = StreamingPCA(4)
    stream.add(np.ones((3, 10)))
    with pytest.raises(ValueError, match="needs at least that many spectra, got 3"):
        stream.finish()


def test_masked_pixels_are_continuum_and_do_not_count():
    rng = np.random.default_rng(4)
    labels = rng.normal(0, 1, (200, 2))
    flux = linear_spectra(labels, rng)
    mask = np.ones_like(flux, dtype=np.uint8)
    mask[:, :100] = 0
    garbage = flux.copy()
    garbage[:, :100] = rng.normal(0, 50, (200, 100))
    assert np.all(fill_masked(garbage, mask)[:, :100] == FILL_VALUE)
    clean, dirty = StreamingPCA(2), StreamingPCA(2)
    clean.add(fill_masked(flux, mask))
    dirty.add(fill_masked(garbage, mask))
    a, b = clean.finish(), dirty.finish()
    np.testing.assert_allclose(a.components, b.components)
    assert np.array_equal(pca_l1(a, flux, mask)[1], pca_l1(b, garbage, mask)[1])


def test_reconstruction_at_the_true_rank_is_noise_limited():
    """Rank-2 signal + Gaussian noise of sigma 1/snr: L1 / noise is 1 at k = 2, above at 1."""
    rng = np.random.default_rng(5)
    snr = rng.uniform(50, 200, 400)
    labels = rng.normal(0, 1, (400, 2))
    basis = rng.normal(0, 0.05, (2, PIXELS.size))
    flux = 1.0 + labels @ basis + rng.normal(0, 1, (400, PIXELS.size)) / snr[:, None]
    mask = np.ones_like(flux)
    ratios = []
    for k in (2, 1):
        stream = StreamingPCA(k)
        stream.add(flux)
        _, l1 = pca_l1(stream.finish(), flux, mask)
        ratios.append(reconstruction_summary(l1, snr)["median_l1_over_noise"])
    assert ratios[0] == pytest.approx(1.0, abs=0.02)
    assert ratios[1] > 2.0
