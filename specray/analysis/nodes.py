"""Which latent nodes are live, and which node-label pairs are significant (steps 2-4 of
:mod:`specray.analysis.analyze`).

Live nodes by two criteria side by side: the information a node passes on,
0.5 ln(1 + Var(mu) / E[sigma^2]) in nats (needs logvar), and the paper's unscaled MAD of
mu. A Gaussian-copula screen of every node x label pair flags nodes below the threshold
that still relate to a label; then every live node x label pair is tested with the
configured estimator, permutations and FDR (:mod:`specray.analysis.significance_table`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from specray.analysis.significance import UnresolvedPermutationWarning
from specray.analysis.significance_table import significance_table
from specray.config import AnalysisConfig
from specray.model.posterior import mean_kl_per_node, node_dispersion, node_information


def _significance(mu, labels, nodes, cfg, notes, **kwargs) -> list[dict]:
    """significance_table, with a too-small permutation count recorded as a warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnresolvedPermutationWarning)
        rows = significance_table(
            mu, labels, nodes=nodes, seed=cfg.seed, alpha=cfg.alpha, fdr=cfg.fdr, **kwargs
        )
    notes.extend(
        str(w.message) for w in caught if issubclass(w.category, UnresolvedPermutationWarning)
    )
    return rows


def _screen(mu, labels, cfg, notes) -> dict:
    rows = _significance(mu, labels, None, cfg, notes, method="copula", ci_resamples=0)
    keep = ("node", "label", "mi", "p_value", "p_adjusted", "significant")
    pairs = [{key: row[key] for key in keep} for row in rows]
    return {"estimator": "copula", "permutations": rows[0]["permutations"], "pairs": pairs}


@dataclass
class NodeTests:
    """Steps 2-4: which nodes are alive, and which node-label pairs are significant."""

    mad: np.ndarray
    informative: list[int]
    kl: np.ndarray | None
    screen: dict | None
    rows: list[dict]
    information: np.ndarray | None = None
    live_sets: dict = field(default_factory=dict)

    @property
    def n_tests(self) -> int:
        return len(self.rows)


def live_node_sets(
    mu: np.ndarray, logvar: np.ndarray | None, cfg: AnalysisConfig, notes: list[str]
) -> tuple[dict, np.ndarray, np.ndarray | None]:
    """Both live-node criteria (see :mod:`specray.model.posterior`), which is analysed.

    Returns ``({criterion: {nodes, threshold, unit, measure, analysed}}, mad, information)``;
    the information criterion needs logvar, and without it the MAD set is analysed.
    """
    mad = node_dispersion(mu, cfg.dispersion_threshold)["mad"]
    sets = {
        "mad": {
            "measure": "unscaled MAD of mu (the paper's criterion)",
            "threshold": cfg.dispersion_threshold,
            "unit": "latent units",
            "nodes": [int(j) for j in np.flatnonzero(mad > cfg.dispersion_threshold)],
        }
    }
    information = None if logvar is None else node_information(mu, logvar)
    if information is not None:
        sets["information"] = {
            "measure": "0.5 ln(1 + Var(mu) / E[sigma^2])",
            "threshold": cfg.information_threshold,
            "unit": "nat",
            "nodes": [int(j) for j in np.flatnonzero(information > cfg.information_threshold)],
        }
    analysed = cfg.live_criterion
    if analysed not in sets:
        notes.append("the latent table has no logvar: live nodes chosen by the MAD of mu instead")
        analysed = "mad"
    for name, entry in sets.items():
        entry["analysed"] = name == analysed
    if "information" in sets and sets["information"]["nodes"] != sets["mad"]["nodes"]:
        only_mad = sorted(set(sets["mad"]["nodes"]) - set(sets["information"]["nodes"]))
        if only_mad:
            notes.append(
                f"{len(only_mad)} node(s) pass the paper's MAD threshold but carry under "
                f"{cfg.information_threshold:g} nat (posterior wider than the spread of mu): "
                + ", ".join(f"z{j}" for j in only_mad)
            )
    return sets, mad, information


def assess_nodes(
    mu: np.ndarray,
    labels: dict[str, np.ndarray],
    cfg: AnalysisConfig,
    notes: list[str],
    logvar: np.ndarray | None = None,
) -> NodeTests:
    """Live nodes by both criteria, the copula screen of all nodes, and the significance of
    every live node x label pair (Ray fan-out). Caveats are appended to ``notes``."""
    sets, mad, information = live_node_sets(mu, logvar, cfg, notes)
    analysed = next(name for name, entry in sets.items() if entry["analysed"])
    informative = sets[analysed]["nodes"]
    kl = mean_kl_per_node(mu, logvar) if logvar is not None else None
    if not informative:
        notes.append(
            f"no node passes the {analysed} criterion (above "
            f"{sets[analysed]['threshold']:g} {sets[analysed]['unit']}): no node is live, "
            "so no node-label pair was tested"
        )
    screen = _screen(mu, labels, cfg, notes) if cfg.screen and labels else None
    note_screened_nodes(screen, informative, mad, information, analysed, notes)
    rows: list[dict] = []
    if informative and labels:
        rows = _significance(
            mu, labels, informative, cfg, notes,
            method=cfg.estimator, permutations=_requested_permutations(cfg),
            ci_resamples=cfg.ci_resamples,
        )  # fmt: skip
    if cfg.estimator == "histogram":
        notes.append("histogram MI is biased upward (~(bins-1)^2/(2n) nat); prefer ksg")
    return NodeTests(mad, informative, kl, screen, rows, information, sets)


def note_screened_nodes(screen, informative, mad, information, analysed, notes) -> None:
    """One caveat per node that is not live but that the copula screen relates to labels."""
    related: dict[int, list[dict]] = {}
    for pair in screen["pairs"] if screen else []:
        if pair["significant"] and pair["node"] not in informative:
            related.setdefault(pair["node"], []).append(pair)
    for j, pairs in sorted(related.items()):
        measure = f"MAD {mad[j]:.3g}" if information is None else (
            f"{information[j]:.3g} nat, MAD {mad[j]:.3g}"
        )  # fmt: skip
        found = ", ".join(
            f"{p['label']} (MI {p['mi']:.3f} nat, adjusted p {p['p_adjusted']:.3g})"
            for p in sorted(pairs, key=lambda p: -p["mi"])
        )
        notes.append(
            f"node {j} is not live by the {analysed} criterion ({measure}) but the copula "
            f"screen finds it related to {found}"
        )


def _requested_permutations(cfg: AnalysisConfig) -> int | None:
    """The configured B, or None ("auto", or 0 as before) to let significance choose it."""
    return None if cfg.permutations in ("auto", 0) else int(cfg.permutations)


def marginal_label_nodes(rows: list[dict], labels: list[str]) -> dict[str, dict | None]:
    out: dict[str, dict | None] = {}
    for label in labels:
        hits = [row for row in rows if row["label"] == label and row["significant"]]
        best = max(hits, key=lambda row: row["mi"]) if hits else None
        out[label] = (
            None
            if best is None
            else {key: best.get(key) for key in ("node", "mi", "ci", "p_adjusted", "at_floor")}
        )
    return out
