"""Selection of spectra for the latent analysis: NaN drop, one per object, sigma clip."""

import numpy as np
import pytest

from specray.analysis.selection import (
    best_per_object,
    resample_by_object,
    select_for_analysis,
    sigma_clip_mask,
)


def survey(n_objects: int = 300, seed: int = 0) -> dict[str, np.ndarray]:
    """Several spectra per object; catalogue labels shared by an object's spectra."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 6, n_objects)
    obj = np.repeat(np.arange(n_objects), counts)
    teff = rng.normal(5_500, 500, n_objects)[obj]
    return {
        "object": np.array([f"HD{i:05d}" for i in obj]),
        "snr": rng.uniform(10, 200, obj.size),
        "teff": teff,
        "airmass": rng.uniform(1.0, 2.0, obj.size),
    }


def test_one_spectrum_per_object_with_highest_snr():
    table = survey()
    idx = select_for_analysis(table, ["teff"], sigma=None)
    objects = table["object"][idx]
    assert len(np.unique(objects)) == len(objects) == len(np.unique(table["object"]))
    for i in idx[:50]:
        same = table["object"] == table["object"][i]
        assert table["snr"][i] == table["snr"][same].max()


def test_nan_rows_dropped_before_choosing_the_spectrum():
    table = survey()
    first = table["object"][0]
    same = np.flatnonzero(table["object"] == first)
    best = same[np.argmax(table["snr"][same])]
    table["airmass"][best] = np.nan
    idx = select_for_analysis(table, ["teff", "airmass"], sigma=None)
    chosen = idx[table["object"][idx] == first]
    if same.size > 1:  # the object survives through its next-best spectrum
        assert chosen.size == 1 and chosen[0] != best
    else:
        assert chosen.size == 0
    assert np.all(np.isfinite(table["airmass"][idx]))


def test_five_sigma_clip_removes_outlier_only():
    rng = np.random.default_rng(1)
    table = {"teff": rng.normal(5_500, 500, 2_000), "logg": rng.normal(4.4, 0.2, 2_000)}
    table["teff"][7] = 5_500 + 50 * 500
    table["logg"][9] = np.nan
    idx = select_for_analysis(table, ["teff", "logg"], one_per_object=False)
    assert 7 not in idx and 9 not in idx
    assert idx.size == 1_998


def test_clip_iterations():
    # After the 1000-sigma outlier goes, the 20-sigma ones become visible.
    values = np.concatenate([np.random.default_rng(2).normal(0, 1, 1_000), [20.0, -20.0, 1e3]])
    keep = np.ones(values.size, dtype=bool)
    once = sigma_clip_mask([values], keep, 5.0, iterations=1)
    many = sigma_clip_mask([values], keep, 5.0, iterations=10)
    assert not once[-1] and once[-3] and once[-2]
    assert not many[-3:].any() and many[:1_000].sum() >= 998
    with pytest.raises(ValueError):
        sigma_clip_mask([values], keep, -1.0)


def test_random_spectrum_per_object_is_reproducible():
    table = survey()
    a = select_for_analysis(table, ["teff"], sigma=None, rng=3)
    b = select_for_analysis(table, ["teff"], sigma=None, rng=3)
    c = select_for_analysis(table, ["teff"], sigma=None, rng=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len(np.unique(table["object"][a])) == a.size


def test_resample_by_object_is_roughly_uniform():
    objects = np.array(["a"] * 4 + ["b"])
    rng = np.random.default_rng(5)
    picks = np.array([resample_by_object(objects, rng) for _ in range(2_000)])
    assert np.all(picks[:, 1] == 4)
    counts = np.bincount(picks[:, 0], minlength=4)
    assert counts.min() > 400 and counts.max() < 600  # 500 each expected


def test_best_per_object_ties_and_nan():
    objects = np.array(["x", "x", "x", "y"])
    assert best_per_object(objects, [np.nan, 5.0, 5.0, np.nan]).tolist() == [1, 3]


def test_selection_errors():
    table = survey(20)
    with pytest.raises(KeyError, match="vsini"):
        select_for_analysis(table, ["vsini"])
    with pytest.raises(KeyError, match="SNR"):
        select_for_analysis({"object": table["object"], "teff": table["teff"]}, ["teff"])
    with pytest.raises(ValueError, match="empty"):
        select_for_analysis(table, [])
    with pytest.raises(ValueError, match="shape"):
        select_for_analysis({**table, "logg": np.ones(3)}, ["teff", "logg"])
