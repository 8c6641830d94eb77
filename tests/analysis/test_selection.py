"""Selection of spectra for the latent analysis: NaN drop, one per object, sigma clip."""

import numpy as np
import pytest

from specray.analysis.selection import (
    best_per_object,
    missing_as_nan,
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


def test_clip_is_iterated_and_robust():
    # One mean/std pass misses the 20-sigma points (the 1000-sigma one inflates the std);
    # median/MAD iterated to convergence removes all three and keeps the Gaussian.
    values = np.concatenate([np.random.default_rng(2).normal(0, 1, 1_000), [20.0, -20.0, 1e3]])
    keep = np.ones(values.size, dtype=bool)
    robust = sigma_clip_mask([values], keep, 5.0)
    assert not robust[-3:].any() and robust[:1_000].sum() >= 998
    assert abs(values[:1_000] - values[:1_000].mean()).max() > 3  # a real tail is kept
    with pytest.raises(ValueError):
        sigma_clip_mask([values], keep, -1.0)
    with pytest.raises(ValueError, match="iterations"):
        sigma_clip_mask([values], keep, 5.0, iterations=0)


def test_placeholders_are_missing_and_never_selected():
    """39 of 300 stars with [Fe/H] = 9999 (as in a real library): none survives; one
    mean/std 5-sigma pass would have kept all 39 (std ~3,200 dex)."""
    rng = np.random.default_rng(3)
    feh = rng.normal(-0.1, 0.25, 300)
    bad = rng.choice(300, 39, replace=False)
    feh[bad] = 9999.0
    assert np.all(np.abs(feh - feh.mean()) <= 5 * feh.std())  # the naive clip keeps them
    table = {"feh": feh.astype(np.float32), "teff": rng.normal(5_500, 400, 300)}
    table["teff"][:3] = [-99.0, np.inf, -9999.0]
    idx = select_for_analysis(table, ["feh", "teff"], one_per_object=False)
    assert not set(bad) & set(idx) and not {0, 1, 2} & set(idx)
    assert idx.size >= 300 - 39 - 3 - 2  # the Gaussian rows are (almost) all kept
    # Even with placeholder detection off, the robust clip alone removes the cluster.
    clipped_only = select_for_analysis(table, ["feh"], one_per_object=False, placeholders=())
    assert not set(bad) & set(clipped_only) and clipped_only.size >= 300 - 39 - 2
    values, n_placeholder = missing_as_nan(table["feh"])
    assert n_placeholder == 39 and np.isnan(values[bad]).all()
    assert np.isfinite(np.delete(values, bad)).all()
    # +-99 km/s among other radial velocities are real; 9999 is not (the shared rule).
    rv = [99.0, -99.0, 12.0, -30.0, 45.0, -60.0, 80.0, 5.0, 9999.0, np.inf]
    values, n_placeholder = missing_as_nan(rv)
    assert n_placeholder == 1 and np.isnan(values[8:]).all() and np.isfinite(values[:8]).all()
    # An explicit list (analysis.placeholders) matches exactly those values.
    assert missing_as_nan(rv, placeholders=(-99.0,))[1] == 1


def test_robust_clip_survives_a_discrete_label():
    """More than half the values equal: the MAD is 0, the clip falls back to the std."""
    flags = np.array([0.0] * 200 + [1.0] * 80 + [2.0] * 20)
    keep = sigma_clip_mask([flags], np.ones(flags.size, dtype=bool), 5.0)
    assert keep.all()


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
