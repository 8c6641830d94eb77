"""The main job end to end at full size, as the README's first command runs it.

synth -> ingest -> train -> analyse -> report on the default synthetic survey, with the
default settings, must reproduce the paper's headline in miniature: one latent node tracks
the radial velocity, another the effective temperature, both significant after the
false-discovery-rate correction; the Teff node passes the exclusive attribution; a handful
of nodes stay alive by posterior information. The truth is the survey's
own labels, which the network never sees. pytest's --durations line shows how long it took
(the demo also prints it); the issue's target is well under 15 minutes on 2 cores.
"""

import json

import pytest

from specray.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session")]

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
    # Exclusive attribution: teff's node is teff's alone; rv's node is named or reported as
    # mixed (never silently dropped). An exclusive rv node is issue 11's open demo item.
    named_teff = analysis["label_nodes"]["teff"]
    assert named_teff is not None and named_teff["node"] == teff["node"]
    assert f"teff: node {teff['node']}" in printed
    rv_entry = analysis["attribution"]["labels"]["rv"]
    rv_verdict = rv_entry["verdict"]
    assert rv_verdict["status"] in ("node", "mixed"), rv_verdict
    # The verdict's node (largest unique information) may differ from the marginal best
    # when RV is spread over two nodes; it must still track RV significantly.
    verdict_row = next(row for row in rv_entry["nodes"] if row["node"] == rv_verdict["node"])
    assert verdict_row["mi_significant"] and verdict_row["mi"] > MIN_MI_NATS, verdict_row
    assert f"rv: {'node' if rv_verdict['status'] == 'node' else 'mixed'}" in printed
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
