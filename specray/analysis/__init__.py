"""Latent-space analysis: which nodes are alive, and what they know about the labels.

Statistical core (plain NumPy/SciPy; Ray only for the significance fan-out):

- :mod:`~specray.analysis.mi`: mutual-information estimators (KSG, Gaussian copula,
  histogram), in nats.
- :mod:`~specray.analysis.significance`: permutation p-values, BH/BY correction,
  half-sampling intervals, the node x label significance table (Ray tasks).
- :mod:`~specray.analysis.selection`: which spectra enter the analysis (placeholders and
  NaN as missing, robust sigma clip, one spectrum per object).
- :mod:`~specray.model.posterior` (below training and analysis, both use it): live
  nodes by information or by spread of mu, KL per node.
- :mod:`~specray.analysis.anomalies`: isolation-forest anomaly scores.
"""

from specray.analysis.anomalies import isolation_forest_scores
from specray.analysis.mi import (
    Estimator,
    corrected_histogram_mi_table,
    histogram_mi_table,
    indicator_map,
    make_estimator,
    mutual_information,
    normal_scores,
    rank_transform,
)
from specray.analysis.selection import (
    best_per_object,
    missing_as_nan,
    resample_by_object,
    select_for_analysis,
    sigma_clip_mask,
)
from specray.analysis.significance import (
    UnresolvedPermutationWarning,
    adjust_pvalues,
    format_pvalue,
    half_sample_ci,
    is_resolvable,
    min_resolvable_permutations,
    pairwise_node_mi,
    permutation_pvalue,
    permutation_test,
    recentred_interval,
)
from specray.analysis.significance_table import significance_table
from specray.model.posterior import (
    informative_nodes,
    live_nodes,
    mean_kl_per_node,
    node_dispersion,
    node_information,
)

__all__ = [
    "Estimator",
    "UnresolvedPermutationWarning",
    "adjust_pvalues",
    "best_per_object",
    "corrected_histogram_mi_table",
    "format_pvalue",
    "half_sample_ci",
    "histogram_mi_table",
    "indicator_map",
    "informative_nodes",
    "is_resolvable",
    "isolation_forest_scores",
    "live_nodes",
    "make_estimator",
    "mean_kl_per_node",
    "min_resolvable_permutations",
    "missing_as_nan",
    "mutual_information",
    "node_dispersion",
    "node_information",
    "normal_scores",
    "pairwise_node_mi",
    "permutation_pvalue",
    "permutation_test",
    "rank_transform",
    "recentred_interval",
    "resample_by_object",
    "select_for_analysis",
    "sigma_clip_mask",
    "significance_table",
]
