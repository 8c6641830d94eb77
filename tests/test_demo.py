"""The main job end to end at full size, as the README's first command runs it.

synth -> ingest -> train -> analyse -> report on the default synthetic survey, with the
default settings, must reproduce the paper's headline in miniature: one latent node tracks
the radial velocity, another the effective temperature, both significant after the
false-discovery-rate correction, and further nodes stay alive. The truth is the survey's
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
    rv, teff = analysis["label_nodes"]["rv"], analysis["label_nodes"]["teff"]
    assert rv is not None and teff is not None, analysis["label_nodes"]
    assert rv["node"] != teff["node"]
    alpha = analysis["config"]["alpha"]
    for label, found in (("rv", rv), ("teff", teff)):
        assert found["p_adjusted"] < alpha, (label, found)
        assert found["mi"] > MIN_MI_NATS, (label, found)
        assert f"{label}: node {found['node']}" in printed
    assert len(analysis["informative_nodes"]) >= 3  # further live nodes beyond the two

    assert len(list((out / "raw").glob("*.fits"))) > 300
    assert (out / "store" / "manifest.jsonl").exists()
    metrics = [
        json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [entry["epoch"] for entry in metrics] == list(range(1, len(metrics) + 1))
    html = (out / "analysis" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3
