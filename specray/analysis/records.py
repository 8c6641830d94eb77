"""The record of ``specray analyze``: ``analysis.json`` (a :class:`specray.records.Record`).

Written once per analysis by :func:`specray.analysis.analyze.analyze`, read back by
:meth:`AnalysisRecord.read` (``specray retrain`` compares two). Its fields' docstrings are
the format's documentation: ``docs/analysis-json.md`` is generated from them
(:func:`schema_document`; ``python -m specray.analysis.records > docs/analysis-json.md``),
and a test fails when the two disagree. MI is in nats; NaN and infinities are written as
null. The nested tables stay plain JSON objects, described here by their keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from specray import storage
from specray.records import Record, markdown_table

ANALYSIS_FILE = "analysis.json"
SCHEMA_NAME = "specray.analysis/1"


@dataclass(frozen=True, kw_only=True)
class AnalysisRecord(Record):
    """Every number ``specray analyze`` found, with where it came from and how far to trust it."""

    INDENT = 1
    ALLOW_NAN = False

    schema: Literal["specray.analysis/1"] = SCHEMA_NAME
    """The format's name and major version, ``"specray.analysis/1"``."""
    created: str
    """When the analysis ran (UTC, ISO 8601)."""
    source: dict | None = None
    """{latents, data, model, checkpoint, epoch, step, store, grid}: the latent table, store,
    model and checkpoint analysed, and the grid."""
    n_spectra: int
    """Rows (spectra) in the latent table."""
    n_objects: int | None = None
    """Distinct objects in the latent table."""
    n_selected: int | None = None
    """Spectra entering the analysis (one per object unless disabled)."""
    latent_dim: int
    """D, the number of latent nodes."""
    labels: list[str] | None = None
    """The labels analysed (requested ones that have values)."""
    selection: dict | None = None
    """{one_per_object, sigma_clip, clip_method, placeholders, complete_cases, per_label:
    {label: {n_placeholder, n_finite, n_clipped, n}}}."""
    informative_nodes: list[int]
    """The live nodes analysed, ascending."""
    live_nodes: dict | None = None
    """{information: {measure, threshold, unit, nodes, analysed}, mad: {...}}: both live-node
    criteria; ``analysed`` marks the one used (information is absent without logvar)."""
    dispersion: list[dict] | None = None
    """[{node, mad, information, kl (both null without logvar), informative,
    live_information, live_mad}] for every node."""
    screen: dict | None = None
    """{estimator, permutations, pairs: [{node, label, mi, p_value, p_adjusted,
    significant}]}: the Gaussian-copula screen of every node, or null."""
    mi: list[dict] | None = None
    """[{node, label, estimator, n, mi, ci [low, high], p_value, at_floor, p_adjusted,
    significant, permutations, resolvable}] for every informative node x label pair;
    at_floor: no permutation reached the observed MI (p = 1/(B+1), shown "< p")."""
    label_nodes: dict[str, dict | None]
    """{label: {node, mi, ci, p_adjusted, cmi, cmi_ci, cmi_p_adjusted, share} or null}: the
    attribution's named nodes."""
    label_nodes_marginal: dict[str, dict | None] | None = None
    """{label: {node, mi, ci, p_adjusted} or null}: the significant node of highest MI."""
    label_kinds: dict[str, dict] | None = None
    """{label: {kind, detected, distinct_values}}."""
    attribution: dict | None = None
    """{estimator, settings, condition, permutations, labels: {label: {joint, nodes: [{node,
    mi, mi_ci, ..., cmi, cmi_ci, cmi_p_adjusted, share}], verdict: {status, reason, ...}}},
    nodes: {node: {best_label, mi, fraction_explained, status, mixed_with, related_labels,
    rivals}}, label_nodes}, or null."""
    node_independence: dict | None = None
    """{nodes, estimator, mi: matrix (null diagonal)} between the informative nodes, or null."""
    histogram_mi: dict | None = None
    """{binnings, nodes: "all", mi: {label: [[per node] per binning]}, corrected: {label:
    same, null where bins > max_bins}, correction, max_bins: {label: bins}}, or null without
    labels."""
    anomalies: dict | None = None
    """{method, nodes, n_scored, median_score, top: [{rank, id, object, score, then one key per
    label}]}, or null."""
    baseline: dict | None = None
    """PCA of the same selected spectra at k = number of informative nodes: {method, store,
    n_spectra, n_components, nodes, explained_variance_ratio, labels: {label: {n,
    latents|pca|both: {r2, interval, folds}, best_node: {node, mi}, best_pc: {pc, mi}}},
    reconstruction: {model|pca: {median_l1, median_l1_over_noise, quartiles_l1_over_noise,
    n} (model null without --model)}}, or null (no store or no informative node)."""
    node_wavelengths: dict | None = None
    """{method, nodes: {node: {mean, peak_wavelengths, share_near_lines: {line: fraction}}}}:
    what each live node reads (specray.analysis.wavelengths; needs the model), or null."""
    permutations: dict | None = None
    """{requested ("auto" or B), floor (1/(B+1)), used, needed, resolvable, fdr, alpha,
    n_tests}: the significance stage with ``estimator``."""
    config: dict | None = None
    """The AnalysisConfig used."""
    training: dict | None = None
    """The checkpoint's per-epoch history with the KL weight
    (specray.analysis.diagnosis.training_record), or null."""
    reconstruction_examples: dict | None = None
    """{ids, snr, robust_residual_sigma} for the spectra of the reconstruction figure, or null
    (needs the store and the model)."""
    provenance: dict | None = None
    """{versions, python, platform, training_config, data_fingerprint, trained_on, store:
    {uri, format_version, n_spectra, n_quarantined, preprocessing}}."""
    figures: list[dict] | None = None
    """[{name, file, caption}], in the order the report shows them."""
    report: str | None = None
    """File name of the HTML report."""
    warnings: list[str] | None = None
    """Caveats a reader must see."""
    verdict: dict | None = None
    """{status: fit | caution | not fit, checks: [{check, status (ok, caution, problem,
    unknown), message}]}: is the model fit to interpret (specray.analysis.diagnosis)."""


def read_analysis(out: str) -> AnalysisRecord:
    """The ``analysis.json`` of the analysis in the folder ``out``."""
    return AnalysisRecord.read(storage.join(out, ANALYSIS_FILE))


DOCUMENT_HEAD = """\
# analysis.json

`specray analyze` writes `analysis.json` into its output folder: one JSON object, MI in
nats, NaN and infinities written as null. This page is generated from the record that
defines the file, `AnalysisRecord` in `specray/analysis/records.py`; regenerate it with
`python -m specray.analysis.records > docs/analysis-json.md` (a test fails while the two
disagree).

A file without `schema_version` was written before the field existed and reads as version
1; a file of a newer version is refused by this specray with a message to upgrade it.
"""


def schema_document() -> str:
    """``docs/analysis-json.md``: the file's keys, types and meanings, from the record."""
    return f"{DOCUMENT_HEAD}\n{markdown_table(AnalysisRecord)}"


if __name__ == "__main__":
    print(schema_document(), end="")
