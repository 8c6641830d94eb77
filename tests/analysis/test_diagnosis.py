"""The report's diagnosis: training record, each check of the verdict, example spectra."""

import numpy as np
import pytest

from specray.analysis.diagnosis import (
    example_rows,
    training_record,
    verdict,
    verdict_line,
)
from specray.data.reader import read_spectra
from specray.data.store import StoreError, open_store
from specray.model.records import CheckpointMeta, EpochMetrics
from specray.schema import FORMAT_VERSION
from tests.helpers import plain_rows, write_toy_store


def meta_with(steps, start=150, end=250, beta=0.3):
    history = [
        EpochMetrics(epoch=k + 1, step=s, train_loss=1.0 / (k + 1), val_loss=1.1 / (k + 1),
                     recon=0.9, val_recon=1.0, kl=0.1, val_kl=0.1, active_nodes=4,
                     data_wait_s=0.1, step_s=1.0, samples_per_s=100.0, seconds=1.2)
        for k, s in enumerate(steps)
    ]  # fmt: skip
    config = {"loss": {"beta": beta, "warmup_start": start, "warmup_end": end}}
    return CheckpointMeta(
        config=config, grid={}, architecture={}, epoch=len(steps), step=steps[-1] if steps else 0,
        history=history,
    )  # fmt: skip


def test_training_record_recomputes_the_kl_weight_at_each_epoch_end():
    record = training_record(meta_with([100, 200, 300, 1000]))
    assert record["kl_weight"] == pytest.approx([0.0, 0.15, 0.3, 0.3])
    assert record["final_kl_weight"] == pytest.approx(0.3)
    assert record["fraction_at_beta"] == pytest.approx((1000 - 250) / 1000)
    assert record["train_loss"][0] == 1.0 and record["epochs"] == [1, 2, 3, 4]
    assert training_record(meta_with([])) is None


def good_result(**changes):
    """An analysis record that passes every check; ``changes`` break one."""
    result = {
        "training": training_record(meta_with([100, 200, 300, 1000])),
        "baseline": {"reconstruction": {"model": {"median_l1_over_noise": 1.4},
                                        "pca": {"median_l1_over_noise": 2.0}}},
        "informative_nodes": [1, 4],
        "labels": ["rv", "teff"],
        "mi": [{"label": "rv", "node": 1, "significant": True},
               {"label": "teff", "node": 4, "significant": True}],
        "node_independence": {"nodes": [1, 4], "mi": [[None, 0.05], [0.05, None]]},
        "permutations": {"used": 2000, "resolvable": True, "fdr": "bh", "n_tests": 4,
                         "needed": 1919},
    }  # fmt: skip
    result.update(changes)
    return result


def statuses(record):
    return {c["check"]: c["status"] for c in record["checks"]}


def test_a_sound_analysis_is_fit_to_interpret():
    record = verdict(good_result())
    assert record["status"] == "fit" and set(statuses(record).values()) == {"ok"}
    assert verdict_line(record).startswith("verdict: fit to interpret")


@pytest.mark.parametrize(
    ("changes", "check", "status"),
    [
        ({"training": training_record(meta_with([100, 200]))}, "kl_weight", "problem"),
        ({"training": training_record(meta_with([100, 200, 260]))}, "kl_weight", "caution"),
        ({"baseline": {"reconstruction": {"model": {"median_l1_over_noise": 12.0}}}},
         "reconstruction", "problem"),
        ({"baseline": {"reconstruction": {"model": {"median_l1_over_noise": 5.0}}}},
         "reconstruction", "caution"),
        ({"baseline": {"reconstruction": {"model": {"median_l1_over_noise": 2.0},
                                          "pca": {"median_l1_over_noise": 1.5}}}},
         "reconstruction", "caution"),
        ({"informative_nodes": []}, "live_nodes", "problem"),
        ({"mi": [{"label": "rv", "node": 1, "significant": False}]}, "live_nodes", "problem"),
        ({"node_independence": {"nodes": [1, 4], "mi": [[None, 1.3], [1.3, None]]}},
         "independence", "problem"),
        ({"node_independence": {"nodes": [1, 4], "mi": [[None, 0.4], [0.4, None]]}},
         "independence", "caution"),
        ({"permutations": {"used": 999, "resolvable": False, "fdr": "bh", "n_tests": 40,
                           "needed": 15999}}, "significance", "problem"),
    ],
)  # fmt: skip
def test_each_check_flags_what_it_is_for(changes, check, status):
    record = verdict(good_result(**changes))
    assert statuses(record)[check] == status
    others = {name for name, s in statuses(record).items() if s != "ok"}
    assert others == {check}
    assert record["status"] == {"problem": "not fit", "caution": "caution"}[status]
    line = verdict_line(record)
    assert ("NOT FIT TO INTERPRET" in line) == (status == "problem")


def test_unknown_checks_do_not_decide_the_verdict():
    record = verdict(good_result(training=None, baseline=None, node_independence=None))
    assert statuses(record)["kl_weight"] == "unknown" and record["status"] == "fit"


def test_examples_span_the_snr_range_and_skip_missing_values():
    snr = np.array([20.0, np.nan, 5.0, 80.0, 40.0, 10.0])
    assert example_rows(snr) == [2, 0, 3]  # lowest (5), median of the five (20), highest (80)
    assert example_rows(np.array([np.nan])) == [] and example_rows(np.array([7.0])) == [0]


@pytest.mark.parametrize("format_version", [1, FORMAT_VERSION])
def test_read_spectra_returns_the_stored_rows_in_the_asked_order(tmp_path, format_version):
    uri = str(tmp_path / "store")
    labels = write_toy_store(uri, n_objects=10, epochs=2, shards=2, format_version=format_version)
    store = open_store(uri)
    wanted = [labels["id"][17], labels["id"][0], labels["id"][9]]  # across both shards
    got = read_spectra(store, wanted)
    truth = plain_rows(uri)
    assert list(got["id"]) == wanted and got["flux"].dtype == np.float32
    for k, name in enumerate(wanted):
        np.testing.assert_array_equal(got["flux"][k], truth[name][0].astype(np.float32))
        np.testing.assert_array_equal(got["mask"][k], truth[name][1])
    with pytest.raises(StoreError, match="no ingested spectrum with id 'nope'"):
        read_spectra(store, ["nope"])
