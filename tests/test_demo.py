"""The main job end to end at full size, as the README's first command runs it.

synth -> ingest -> train -> analyse -> report on the default synthetic survey, with the
default settings, must reproduce the paper's headline in miniature: one latent node tracks
the radial velocity, another the effective temperature, both significant after the
false-discovery-rate correction, each named by the exclusive attribution or reported as
mixed against every factor the generator varies; a handful of nodes stay alive by
posterior information. The truth is the survey's
own labels, which the network never sees. pytest's --durations line shows how long it took
(the demo also prints it); the issue's target is well under 15 minutes on 2 cores.
"""

import json

import pytest

from specray.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session")]

ALL_FACTORS = ["rv", "teff", "logg", "feh", "vsini", "snr", "berv", "airmass", "pwv", "tilt"]
"""What the generator varies per star or epoch; the demo analyses every one."""

MIN_MI_NATS = 0.5
"""A node 'tracks' a label when their mutual information exceeds this (about a correlation
of 0.63 for Gaussian variables); the paper's headline nodes carry roughly 1 nat or more."""


def test_demo_finds_an_rv_node_and_a_teff_node_and_summarises(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "demo finished in" in printed and str(out / "analysis" / "report.html") in printed

    analysis = json.loads((out / "analysis" / "analysis.json").read_text())
    alpha = analysis["config"]["alpha"]
    # Marginal rule (the paper's): a significant node of MI > 0.5 nat for rv and for teff.
    marginal = analysis["label_nodes_marginal"]
    rv, teff = marginal["rv"], marginal["teff"]
    assert rv is not None and teff is not None, marginal
    assert rv["node"] != teff["node"]
    for label, found in (("rv", rv), ("teff", teff)):
        assert found["p_adjusted"] < alpha, (label, found)
        assert found["mi"] > MIN_MI_NATS, (label, found)
    # Exclusive attribution, against every factor the generator varies: RV's and Teff's
    # nodes are each named, or reported as mixed with the labels they also carry (never
    # silently dropped). Exclusive RV and Teff nodes are issue 11's open demo item.
    assert set(analysis["attribution"]["labels"]) == set(ALL_FACTORS)
    for label in ("rv", "teff"):
        verdict = analysis["attribution"]["labels"][label]["verdict"]
        assert verdict["status"] in ("node", "mixed"), (label, verdict)
        assert set(verdict.get("with", [])) <= set(ALL_FACTORS) - {label}
        # The verdict's node (largest unique information) may differ from the marginal
        # best when a label is spread over two nodes; it must still track it significantly.
        rows = analysis["attribution"]["labels"][label]["nodes"]
        row = next(r for r in rows if r["node"] == verdict["node"])
        assert row["mi_significant"] and row["mi"] > MIN_MI_NATS, (label, row)
        assert f"{label}: {'node' if verdict['status'] == 'node' else 'mixed'}" in printed
    # Every live node is attributed to a generator factor or named as unexplained.
    statuses = {
        int(node): info["status"] for node, info in analysis["attribution"]["nodes"].items()
    }
    assert set(statuses) == set(analysis["informative_nodes"])
    assert set(statuses.values()) <= {"exclusive", "mixed", "unexplained"}
    # A handful of live nodes by posterior information, as in the paper (6 of 128).
    assert 3 <= len(analysis["informative_nodes"]) <= 8
    assert analysis["baseline"] is not None  # compared with PCA at equal dimension
    # The report judges its own model before concluding: every check ran on the demo
    # (training history, reconstruction, live nodes, dependence, significance).
    checks = {c["check"]: c["status"] for c in analysis["verdict"]["checks"]}
    assert "unknown" not in checks.values(), checks
    assert "verdict: " in printed
    assert set(analysis["node_wavelengths"]["nodes"]) == {
        str(j) for j in analysis["informative_nodes"]
    }

    assert len(list((out / "raw").glob("*.fits"))) > 300
    assert (out / "store" / "manifest.jsonl").exists()
    metrics = [
        json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [entry["epoch"] for entry in metrics] == list(range(1, len(metrics) + 1))
    html = (out / "analysis" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3
