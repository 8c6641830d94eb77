"""``specray analyze``: from a store and a model (or a latent table) to numbers and a report.

``analyze(out, config, data=STORE, model=RUN)`` encodes the store first (Ray Data batch
inference, :mod:`specray.analysis.encode`); ``analyze(out, config, latents=FILE)``
analyses an existing latent table (:func:`specray.schema.latent_schema`). Then, on the
encoder means ``mu``:

1. Selection. Catalogue placeholders (``placeholders``: 9999, -99, ...) and infinities
   count as missing. One spectrum per object, the highest-SNR one (``one_per_object``).
   Each label then drops its missing values and is 5-sigma clipped (``sigma_clip``;
   median and MAD, iterated, :func:`specray.analysis.selection.sigma_clip_mask`) on that
   one-per-object set, separately: a star without [Fe/H] still counts for RV. With
   ``complete_cases`` the paper's joint rule applies instead
   (:func:`specray.analysis.selection.select_for_analysis`: rows need every label, and an
   outlier in any label removes the row). Labels absent from the table or without values
   are skipped with a warning.
2. Live nodes, by two criteria reported side by side: the information each node passes
   on, 0.5 ln(1 + Var(mu)/E[sigma^2]) above ``information_threshold`` nats (needs
   ``logvar``), and the paper's unscaled MAD of mu above ``dispersion_threshold``.
   ``live_criterion`` says which set is analysed ("information" by default; "mad"
   without logvar). The mean KL per node to the prior is reported too.
3. Screen (``screen``): every node x label pair with the Gaussian-copula estimator and its
   own permutation count, always enough to resolve the FDR threshold over all D x L
   tests. It sees only monotone dependence; it is there to flag nodes BELOW the dispersion
   threshold that still carry label information (a warning), not to decide anything.
4. Significance: every informative node x label pair with ``estimator`` (KSG by default),
   ``permutations`` shuffles of the label (fanned out as Ray tasks), half-sampling
   intervals, and BH (or BY) over those pairs. If no node is informative, none is tested.
5. ``label_nodes``: per label, the node the attribution names
   (:mod:`specray.analysis.attribution`: significant marginal and conditional MI, the
   lower end of the conditional interval above ``attribution_floor``, at least
   ``attribution_share`` of the joint MI, and the node not another label's or mixed), or
   null. ``label_nodes_marginal`` keeps the old rule (the significant node of highest MI).
   Label kinds (continuous, discrete, categorical) are detected or set by
   ``label_kinds``; ``condition`` names nuisance labels the attribution conditions on.
6. Independence: KSG MI between every pair of informative nodes (method.md 5d).
7. The paper's histogram MI at 5-160 bins for every node and label; the indicator map
   (heat maps) is drawn from the null-corrected, bin-capped version
   (:func:`specray.analysis.mi.corrected_histogram_mi_table`).
8. Anomalies: an isolation forest on the informative nodes of EVERY spectrum in the
   table (a bad exposure of a well-observed star is what one wants to find); top
   ``anomalies`` listed.
9. Traversals (only with ``model``): decoded spectra while each informative node moves
   -2..+2 standard deviations around the median-SNR selected spectrum.

Outputs in ``out`` (a folder or ``s3://`` prefix; each file written atomically):
``latents.parquet`` (when encoding), ``analysis.json``, ``figures/*.png`` and
``report.html`` (one self-contained page, :mod:`specray.analysis.report`).

``analysis.json`` is an :class:`~specray.analysis.records.AnalysisRecord`; its keys, types
and meanings are documented in ``docs/analysis-json.md``, generated from that record.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from specray import storage
from specray.analysis import figures as fig
from specray.analysis.anomalies import isolation_forest_scores
from specray.analysis.attribution import attribution_for_analysis, label_kinds
from specray.analysis.baseline import summary_line as baseline_summary_line
from specray.analysis.diagnosis import diagnose, verdict, verdict_line
from specray.analysis.latents import LatentTable, read_latents
from specray.analysis.mi import (
    DEFAULT_BINNINGS,
    NULL_PERMUTATIONS,
    corrected_histogram_mi_table,
    histogram_mi_table,
    indicator_map,
    max_histogram_bins,
)
from specray.analysis.nodes import NodeTests, assess_nodes, marginal_label_nodes
from specray.analysis.records import ANALYSIS_FILE, AnalysisRecord
from specray.analysis.selection import MIN_LABELLED, Selection, select
from specray.analysis.significance import (
    format_pvalue,
    min_resolvable_permutations,
    pairwise_node_mi,
)
from specray.config import AnalysisConfig, Config
from specray.errors import InputError

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
INDEPENDENCE_METHOD = "ksg"


# ------------------------------------------------------------------ the steps


def _histogram_mi(mu: np.ndarray, labels: dict[str, np.ndarray], seed: int) -> dict:
    """The paper's histogram MI per label, raw and null-corrected (the indicator map's)."""
    tables, corrected, max_bins = {}, {}, {}
    for name, values in labels.items():
        valid = np.isfinite(values)
        tables[name] = histogram_mi_table(mu[valid], values[valid], DEFAULT_BINNINGS)
        corrected[name] = corrected_histogram_mi_table(
            mu[valid], values[valid], DEFAULT_BINNINGS, NULL_PERMUTATIONS, seed
        )
        max_bins[name] = max_histogram_bins(int(valid.sum()))
    return {
        "binnings": list(DEFAULT_BINNINGS),
        "nodes": "all",
        "mi": tables,
        "corrected": corrected,
        "correction": f"minus the mean over {NULL_PERMUTATIONS} label shuffles, floored at 0; "
        "binnings above sqrt(2n) bins left out (null)",
        "max_bins": max_bins,
    }


def _anomalies(table: LatentTable, informative: list[int], cfg: AnalysisConfig) -> dict | None:
    if not informative or len(table) < 2 or cfg.anomalies <= 0:
        return None
    scores = isolation_forest_scores(table.mu[:, informative], seed=cfg.seed)
    top = np.argsort(-scores, kind="stable")[: cfg.anomalies]
    listed = []
    for rank, row in enumerate(top, start=1):
        entry = {"rank": rank, "id": table.ids[row], "object": table.objects[row]}
        entry["score"] = float(scores[row])
        entry.update(
            {name: float(table.columns[name][row]) for name in cfg.labels if name in table.columns}
        )
        listed.append(entry)
    return {
        "method": "isolation forest on the informative nodes; score in (0, 1], higher = odder",
        "nodes": informative,
        "n_scored": len(table),
        "median_score": float(np.median(scores)),
        "top": listed,
    }


def _reference_row(table: LatentTable, rows: np.ndarray) -> int:
    """The selected spectrum of median SNR (the middle row when SNR is unknown)."""
    snr = table.columns.get("snr", np.full(len(table), np.nan))[rows]
    known = np.flatnonzero(np.isfinite(snr))
    if known.size == 0:
        return int(rows[rows.size // 2])
    order = known[np.argsort(snr[known], kind="stable")]
    return int(rows[order[order.size // 2]])


def _traversals(table, sel, informative, mad, model_uri, cfg, notes) -> tuple[bytes, str] | None:
    from specray.analysis.encode import TRAVERSAL_OFFSETS, decode_traversals
    from specray.model.checkpoint import checkpoint_grid, load_trained_model

    if not informative:
        notes.append("no informative node: no latent traversals")
        return None
    model, meta, _ = load_trained_model(model_uri)
    grid = checkpoint_grid(meta)
    if model.arch.latent_dim != table.latent_dim:
        raise InputError(
            f"the model has {model.arch.latent_dim} latent nodes but the latent table "
            f"{table.uri} has {table.latent_dim}"
        )
    nodes = sorted(sorted(informative, key=lambda j: -mad[j])[: cfg.traversal_nodes])
    if len(nodes) < len(informative):
        notes.append(f"traversals shown for the {len(nodes)} most spread informative nodes only")
    ref = _reference_row(table, sel.rows)
    sigma = table.mu[sel.rows][:, nodes].std(axis=0)
    spectra = decode_traversals(model, table.mu[ref], nodes, sigma, TRAVERSAL_OFFSETS)
    windows = fig.windows_on_grid(grid.start, grid.stop)
    where = "zoomed on " + ", ".join(name for name, _, _ in windows)
    if not windows:
        windows = [("whole grid", grid.start, grid.stop)]
        where = "over the whole grid (none of Mg b, Na D, H-alpha lies on it)"
    png = fig.traversal_figure(grid.wavelength, spectra, nodes, TRAVERSAL_OFFSETS, windows)
    caption = (
        f"Latent traversals around the median-SNR spectrum {table.ids[ref]} "
        f"({table.objects[ref]}): each row moves one informative node from -2 to +2 "
        f"standard deviations (over the selected spectra) and decodes, {where}."
    )
    return png, caption


# ------------------------------------------------------------------ orchestration


@dataclass
class AnalysisSummary:
    """What ``analyze`` found, and where it wrote it."""

    out: str
    analysis_uri: str
    report_uri: str
    latents_uri: str
    result: dict

    def summary(self) -> str:
        r = self.result
        lines = [
            f"analysed {r['n_selected']} of {r['n_spectra']} spectra ({r['n_objects']} objects), "
            f"latent_dim {r['latent_dim']}: {len(r['informative_nodes'])} live node(s) "
            f"{r['informative_nodes']}"
        ]
        for name, entry in r["live_nodes"].items():
            if not entry["analysed"]:
                lines.append(
                    f"  ({len(entry['nodes'])} by {name} for comparison: {entry['nodes']})"
                )
        perm = r["permutations"]
        if perm["resolvable"] is False:
            lines.append(
                f"  NOT RESOLVED: {perm['used']} permutations cannot resolve "
                f"{perm['fdr'].upper()} over {perm['n_tests']} tests (needs {perm['needed']}); "
                "the assignments below rest on the permutation floor"
            )
        for label, hit in r["label_nodes"].items():
            verdict = ((r.get("attribution") or {}).get("labels", {}).get(label) or {}).get(
                "verdict"
            )
            if hit is None and verdict:
                lines.append(f"  {label}: {verdict['status']}: {verdict['reason']}")
            elif hit is None:
                lines.append(f"  {label}: no significant node")
            else:
                low, high = hit["ci"]
                p_text = format_pvalue(hit["p_adjusted"], bool(hit.get("at_floor")))
                lines.append(
                    f"  {label}: node {hit['node']}, MI {hit['mi']:.3f} nat "
                    f"[{_fmt(low)}, {_fmt(high)}], adjusted p {p_text}"
                )
        if r.get("baseline"):
            lines.append("  " + baseline_summary_line(r["baseline"]))
        lines.append("  " + verdict_line(r["verdict"]))
        if r["warnings"]:
            lines.append(f"  {len(r['warnings'])} warning(s), listed in the report")
        lines.append(f"report: {self.report_uri} (numbers: {self.analysis_uri})")
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "nan" if value is None or not np.isfinite(value) else f"{value:.3f}"


def _clean(value: Any) -> Any:
    """JSON-safe copy: numpy scalars and arrays to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(key): _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.str_):
        return str(value)
    return value


def _check_sources(data: str | None, model: str | None, latents: str | None) -> None:
    """Either a latent table (a model too draws traversals), or a store with a model."""
    if latents and data:
        raise InputError("give either --latents or --data, not both")
    if not latents and not (data and model):
        raise InputError("need --latents FILE, or --data STORE together with --model RUN")


def analyze(
    out: str,
    config: Config | AnalysisConfig,
    data: str | None = None,
    model: str | None = None,
    latents: str | None = None,
) -> AnalysisSummary:
    """Run the analysis (see the module docstring) and write its outputs into ``out``."""
    out, data, model, latents = (
        None if uri is None else storage.normalize(uri) for uri in (out, data, model, latents)
    )
    cfg = config.analysis if isinstance(config, Config) else config
    latents, table = _latent_table(out, cfg, data, model, latents)
    # Traversals decode with the very checkpoint that encoded (pinned in the table), or
    # with the model given beside --latents.
    decoder = table.info.get("checkpoint", model) if data else model
    notes: list[str] = []
    sel, kinds = _selection(table, cfg, notes)
    mu = table.mu[sel.rows]
    logvar = table.logvar[sel.rows] if table.logvar is not None else None
    tests = assess_nodes(mu, sel.labels, cfg, notes, logvar)
    informative = tests.informative
    independence = _independence(mu, informative, cfg, notes)
    histogram = _histogram_mi(mu, sel.labels, cfg.seed) if sel.labels else None
    attribution = attribution_for_analysis(mu, sel.labels, informative, kinds, cfg, notes)
    figures = _figures(table, sel, cfg, tests, histogram, independence, decoder, notes)
    baseline = _baseline(table, sel, informative, data, decoder, cfg, notes, figures)
    node_wavelengths = _node_wavelengths(table, sel, informative, decoder, cfg, notes, figures)
    snr = table.columns.get("snr")
    diagnosis_record, diagnosis_figures = diagnose(
        data or table.info.get("store"), decoder, table.ids[sel.rows],
        None if snr is None else snr[sel.rows], table.info, notes,
    )  # fmt: skip
    figures.update(diagnosis_figures)
    labels = list(sel.labels)
    values = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": _source(table, latents, data, model),
        "n_spectra": len(table),
        "n_objects": int(np.unique(table.objects).size),
        "n_selected": int(len(sel.rows)),
        "latent_dim": table.latent_dim,
        "labels": labels,
        "selection": sel.info,
        "informative_nodes": informative,
        "live_nodes": tests.live_sets,
        "dispersion": _dispersion_rows(tests, table.latent_dim),
        "screen": tests.screen,
        "mi": tests.rows,
        "label_nodes": attribution["label_nodes"] if attribution else dict.fromkeys(labels),
        "label_nodes_marginal": marginal_label_nodes(tests.rows, labels),
        "label_kinds": {name: kinds[name] for name in labels},
        "attribution": attribution,
        "node_independence": independence,
        "histogram_mi": histogram,
        "anomalies": _anomalies(table, informative, cfg),
        "baseline": baseline,
        "node_wavelengths": node_wavelengths,
        "permutations": _permutations(tests, cfg),
        "config": dataclasses.asdict(cfg),
        **diagnosis_record,
        "figures": [
            {"name": name, "file": f"{FIGURES_DIR}/{name}.png", "caption": caption}
            for name, (_, caption) in figures.items()
        ],
        "report": REPORT_FILE,
        "warnings": notes,
    }
    values = _clean(values)
    record = AnalysisRecord(**values, verdict=verdict(values))
    return _write(out, latents, record, figures)


def _latent_table(
    out: str, cfg: AnalysisConfig, data: str | None, model: str | None, latents: str | None
) -> tuple[str, LatentTable]:
    """The latent table to analyse and its URI: ``latents``, or the store ``data``
    encoded with ``model`` into ``out`` first."""
    _check_sources(data, model, latents)
    if latents is None:
        from specray.analysis.encode import encode_store

        latents = encode_store(
            data, model, out, batch_size=cfg.encode_batch_size, actors=cfg.encode_actors
        )
    return latents, read_latents(latents)


def _selection(table: LatentTable, cfg: AnalysisConfig, notes: list[str]) -> tuple[Selection, dict]:
    """The rows and label values to analyse, and each label's kind.

    Kinds are detected before selection (discrete labels are not clipped), and the
    nuisance labels the attribution conditions on are selected like the others."""
    if table.info.get("no_object_column"):
        notes.append("the latent table has no 'object' column: every row counts as an object")
    wanted = list(dict.fromkeys([*cfg.labels, *cfg.condition]))
    present = {name: table.columns[name] for name in wanted if name in table.columns}
    kinds = label_kinds(present, list(table.info.get("categories", {})), cfg)
    discrete = [name for name, kind in kinds.items() if kind["kind"] != "continuous"]
    sel = select(table, dataclasses.replace(cfg, labels=wanted), notes, discrete)
    log.info("analysing %d of %d spectra, %d labels", len(sel.rows), len(table), len(sel.labels))
    return sel, kinds


def _independence(
    mu: np.ndarray, informative: list[int], cfg: AnalysisConfig, notes
) -> dict | None:
    """KSG MI between every pair of live nodes (method.md 5d), when there are two or more."""
    if len(informative) < 2:
        return None
    if len(mu) < MIN_LABELLED:
        notes.append(f"only {len(mu)} spectra selected: node independence not estimated")
        return None
    matrix = pairwise_node_mi(mu, informative, method=INDEPENDENCE_METHOD, seed=cfg.seed)
    return {"nodes": informative, "estimator": "ksg(k=3,copula)", "mi": matrix}


def _source(table: LatentTable, latents: str, data: str | None, model: str | None) -> dict:
    """Where the analysed latents came from (analysis.json ``source``)."""
    return {
        "latents": latents,
        "data": data,
        "model": model,
        **{key: table.info.get(key) for key in ("checkpoint", "epoch", "step", "store")},
        "grid": json.loads(table.grid.to_json()) if table.grid else None,
    }


def _dispersion_rows(tests: NodeTests, latent_dim: int) -> list[dict]:
    """Per node: its MAD, information and KL, and whether each criterion calls it live."""
    return [
        {
            "node": j,
            "mad": tests.mad[j],
            "information": None if tests.information is None else tests.information[j],
            "kl": None if tests.kl is None else tests.kl[j],
            "informative": j in tests.informative,
            **{f"live_{name}": j in entry["nodes"] for name, entry in tests.live_sets.items()},
        }
        for j in range(latent_dim)
    ]


def _permutations(tests: NodeTests, cfg: AnalysisConfig) -> dict:
    """The permutation count asked for, used and needed to resolve the FDR threshold."""
    rows = tests.rows
    return {
        "requested": cfg.permutations or "auto",
        "floor": 1 / (rows[0]["permutations"] + 1) if rows else None,
        "used": rows[0]["permutations"] if rows else None,
        "needed": min_resolvable_permutations(tests.n_tests, cfg.alpha, cfg.fdr) if rows else None,
        "resolvable": rows[0]["resolvable"] if rows else None,
        "fdr": cfg.fdr,
        "alpha": cfg.alpha,
        "n_tests": tests.n_tests,
    }


def _write(out: str, latents: str, record: AnalysisRecord, figures: dict) -> AnalysisSummary:
    from specray.analysis.report import render_report

    for name, (png, _) in figures.items():
        storage.atomic_write_bytes(storage.join(out, FIGURES_DIR, f"{name}.png"), png)
    analysis_uri = storage.join(out, ANALYSIS_FILE)
    record.write(analysis_uri)
    result = record.to_dict()
    report_uri = storage.join(out, REPORT_FILE)
    storage.atomic_write_text(report_uri, render_report(result, figures))
    log.info("wrote %s and %s", analysis_uri, report_uri)
    return AnalysisSummary(out, analysis_uri, report_uri, latents, result)


def _figures(table, sel, cfg, tests: NodeTests, histogram, independence, decoder, notes):
    """name -> (PNG bytes, caption), in the order the report shows them."""
    mu, rows, informative = table.mu[sel.rows], tests.rows, tests.informative
    out: dict[str, tuple[bytes, str]] = {}
    out["dispersion"] = _dispersion_figure(tests, cfg, len(sel.rows))
    if sel.labels:
        out["label_histograms"] = (
            fig.label_histogram_figure(
                {name: v[np.isfinite(v)] for name, v in sel.labels.items()},
                sel.clipped,
                {name: e["n_placeholder"] for name, e in sel.info["per_label"].items()},
            ),
            "Every analysed label over the selected spectra: blue the values used, red those "
            "the iterated median/MAD clip removed; placeholder values are counted in the "
            "titles and never plotted.",
        )
    if histogram:
        maps = {label: indicator_map(t) for label, t in histogram["corrected"].items()}
        out["mi_heatmap"] = (
            fig.indicator_figure(histogram["binnings"], maps),
            "The paper's indicator, bias-corrected: histogram MI of every node with each "
            "label at 5 to 160 bins minus its mean over "
            f"{NULL_PERMUTATIONS} shuffles of the label, each row divided by its maximum "
            "over nodes. Binnings above sqrt(2n) bins are blank (too fine for the sample "
            "size). A node that dominates at every drawn binning tracks that label.",
        )
    labels = list(sel.labels)
    if rows:
        nodes = informative
        mi = np.array([[_pick(rows, n, lab)["mi"] for lab in labels] for n in nodes])
        sig = np.array([[_pick(rows, n, lab)["significant"] for lab in labels] for n in nodes])
        out["mi_matrix"] = (
            fig.mi_matrix_figure(nodes, labels, mi, sig, rows[0]["estimator"]),
            f"MI of every informative node with every label ({rows[0]['estimator']}); a star "
            f"marks pairs significant after {cfg.fdr.upper()} at alpha {cfg.alpha:g}.",
        )
        for i, label in enumerate(labels):
            best = max((r for r in rows if r["label"] == label), key=lambda r: r["mi"])
            colour = next((labels[(i + k) % len(labels)] for k in range(1, len(labels))), None)
            verdict = "significant" if best["significant"] else "NOT significant"
            title = (
                f"z{best['node']} vs {label}: MI {best['mi']:.3f} nat, "
                f"adj. p {best['p_adjusted']:.3g} ({verdict})"
            )
            out[f"scatter_{label}"] = (
                fig.scatter_figure(
                    sel.labels[label],
                    mu[:, best["node"]],
                    None if colour is None else sel.labels[colour],
                    best["node"],
                    label,
                    colour,
                    title,
                ),  # fmt: skip
                f"The node with the highest MI with {label} (z{best['node']}, {verdict}) "
                f"against {label}" + (f", coloured by {colour}." if colour else "."),
            )
    if decoder:
        traversal = _traversals(table, sel, informative, tests.mad, decoder, cfg, notes)
        if traversal is not None:
            out["traversals"] = traversal
    else:
        notes.append("latent traversals need the model (--model); not drawn for --latents")
    if independence is not None:
        out["independence"] = (
            fig.independence_figure(independence["nodes"], independence["mi"], "ksg"),
            "MI between pairs of informative nodes (KSG on normal scores): small values "
            "back the claim that the nodes carry separate factors.",
        )
    return out


def _dispersion_figure(tests: NodeTests, cfg: AnalysisConfig, n: int) -> tuple[bytes, str]:
    """Both live-node criteria (and the KL per node) side by side, with a caption."""
    sets = tests.live_sets
    live = {name: np.isin(np.arange(tests.mad.size), e["nodes"]) for name, e in sets.items()}
    panels = []
    if tests.information is not None:
        panels.append(("information [nat]", tests.information, cfg.information_threshold,
                       live["information"]))  # fmt: skip
    panels.append(("MAD of mu", tests.mad, cfg.dispersion_threshold, live["mad"]))
    if tests.kl is not None:
        panels.append(("mean KL [nat]", tests.kl, None, live.get("information", live["mad"])))
    analysed = next(name for name, e in sets.items() if e["analysed"])
    caption = (
        f"Live nodes over the {n} selected spectra (log scale). "
        + ("Top: information 0.5 ln(1 + Var(mu)/E[sigma^2]) against "
           f"{cfg.information_threshold:g} nat. " if tests.information is not None else "")
        + f"MAD of mu (the paper's criterion) against {cfg.dispersion_threshold:g}. "
        + ("Bottom: mean KL to the prior. " if tests.kl is not None else "")
        + f"The {analysed} set is analysed."
    )  # fmt: skip
    return fig.dispersion_figure(panels), caption


# ------------------------------------------------------------------ the PCA baseline


def _baseline(table, sel, informative, data, decoder, cfg, notes, figures) -> dict | None:
    """Live nodes against PCA of the same spectra (:mod:`specray.analysis.baseline_store`);
    adds the ``baseline`` figure to ``figures``."""
    from specray.analysis.baseline_store import pca_baseline

    record = pca_baseline(
        data or table.info.get("store"), table.ids[sel.rows], table.mu[sel.rows][:, informative],
        informative, sel.labels, notes, model_uri=decoder, seed=cfg.seed,
        actors=cfg.encode_actors,
    )  # fmt: skip
    if record:
        caption = (
            f"Label recovery from the {len(informative)} live node(s), the same number of "
            "principal components of the same spectra, and both (k-NN R^2, 5-fold CV; "
            "whiskers: fold range); right: reconstruction L1 relative to the noise (1 = "
            "noise-limited)."
        )
        figures["baseline"] = (fig.baseline_figure(_clean(record)), caption)
    return record


def _node_wavelengths(table, sel, informative, decoder, cfg, notes, figures) -> dict | None:
    """What each live node reads (:mod:`specray.analysis.wavelengths`); adds the figure."""
    from specray.analysis.wavelengths import STRONG_LINES, node_sensitivity, summarise

    if not decoder or not informative or table.grid is None:
        if informative:
            notes.append("what each node reads needs the model and the grid: not computed")
        return None
    mu = table.mu[sel.rows]
    sensitivity = node_sensitivity(decoder, mu, informative, cfg.encode_actors)
    wavelength = table.grid.wavelength[: sensitivity.shape[1]]
    figures["node_wavelengths"] = (
        fig.sensitivity_figure(wavelength, sensitivity, informative, STRONG_LINES),
        "What each live node reads: the decoder's mean |d flux / d z_j| times the node's "
        f"spread over the {len(mu)} analysed spectra, along the spectrum; strong lines "
        "dotted. A node that tracks a Doppler shift reads every line; one that tracks Teff "
        "mostly the Balmer lines and the continuum (what the synthetic survey's nodes show).",
    )
    return summarise(wavelength, sensitivity, informative)


def _pick(rows: list[dict], node: int, label: str) -> dict:
    return next(r for r in rows if r["node"] == node and r["label"] == label)
