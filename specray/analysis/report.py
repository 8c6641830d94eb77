"""The analysis report: ONE self-contained HTML page (inline CSS, figures as base64 PNG).

Read top to bottom: what was analysed, whether the model is fit to interpret (the
verdict box, training curves, reconstructions), the headline (which node is which label), then
the evidence (dispersion, MI tables and significance, independence, anomalies,
traversals), the caveats and the provenance. Everything comes from the ``analysis.json`` record
(:mod:`specray.analysis.pipeline`) and the figures' PNG bytes; nothing is fetched from
anywhere when the page is opened.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from specray.analysis.diagnosis import most_dependent_pair
from specray.analysis.significance import format_pvalue

STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; max-width: 1000px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
tr.sig td { background: #eef7ee; font-weight: 600; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.88em; color: #444; }
.headline { background: #f5f8fc; border-left: 4px solid #3a6ea5; padding: 0.6em 1em; }
.warn { background: #fff6e5; border-left: 4px solid #d08a00; padding: 0.6em 1em; }
.muted { color: #666; font-size: 0.9em; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def num(value: Any, digits: int = 3) -> str:
    """A number for a table cell; '-' for None."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return esc(value)


def ci_text(ci: Sequence[float | None] | None) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return "-"
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def table_html(
    header: Sequence[str], rows: Iterable[Sequence[str]], left: int = 0, marks: Sequence[bool] = ()
) -> str:
    """An HTML table of already-escaped cells; the first ``left`` columns left-aligned."""
    head = "".join(
        f'<th class="{"l" if i < left else ""}">{esc(h)}</th>' for i, h in enumerate(header)
    )
    body = []
    for k, row in enumerate(rows):
        cls = ' class="sig"' if k < len(marks) and marks[k] else ""
        cells = "".join(
            f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(row)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def figure_html(name: str, figures: Mapping[str, tuple[bytes, str]]) -> str:
    if name not in figures:
        return ""
    png, caption = figures[name]
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="fig-{esc(name)}"><img src="data:image/png;base64,{data}" '
        f'alt="{esc(name)}"><figcaption>{esc(caption)}</figcaption></figure>'
    )


def _what(r: dict) -> str:
    src, sel = r["source"], r["selection"]
    items = [
        ("latent table", esc(src.get("latents"))),
        ("model checkpoint", esc(src.get("checkpoint") or src.get("model") or "not given")),
        ("trained", f"epoch {num(src.get('epoch'))}, step {num(src.get('step'))}"
         if src.get("epoch") is not None else "-"),
        ("spectra store", esc(src.get("store") or src.get("data") or "-")),
    ]  # fmt: skip
    grid = src.get("grid")
    if grid:
        stop = grid["start"] + (grid["n_native"] - 1) * grid["step"]
        items.append(
            (
                "wavelength grid",
                esc(f"{grid['name']}: {grid['start']:g}-{stop:g} A, {grid['n_native']} pixels"),
            )
        )
    items += [
        ("spectra in the table", num(r["n_spectra"])),
        ("objects", num(r["n_objects"])),
        ("spectra analysed", num(r["n_selected"])
         + (" (one per object, highest SNR)" if sel["one_per_object"] else " (all spectra)")),
        ("latent nodes", num(r["latent_dim"])),
    ]  # fmt: skip
    clip = sel["sigma_clip"]
    rule = (
        "only spectra with every label (joint NaN drop and clip)"
        if sel["complete_cases"]
        else "each label separately: NaN dropped"
    )
    clip_text = f", {clip:g}-sigma clip ({sel.get('clip_method', 'mean/std')})" if clip else ""
    items.append(("selection", esc(rule + (clip_text or ", no clipping"))))
    out = table_html(["", ""], [(f"<b>{k}</b>", v) for k, v in items], left=2)
    per_label = sel["per_label"]
    if per_label:
        rows = [
            (
                esc(name),
                num(v.get("n_placeholder")),
                num(v["n_finite"]),
                num(v["n_clipped"]),
                num(v["n"]),
            )
            for name, v in per_label.items()
        ]
        out += table_html(
            ["label", "placeholders", "with a value", "clipped", "used"], rows, left=1
        )
    return out


def _live_text(r: dict) -> str:
    """How many nodes are live, by the analysed criterion and by the other one."""
    sets = r.get("live_nodes") or {}
    parts = []
    for name, entry in sorted(sets.items(), key=lambda item: not item[1]["analysed"]):
        nodes = ", ".join(f"z{j}" for j in entry["nodes"]) or "none"
        role = "analysed" if entry["analysed"] else "for comparison"
        parts.append(
            f"<b>{len(entry['nodes'])}</b> of {r['latent_dim']} nodes live by {esc(name)} "
            f"({esc(entry['measure'])} above {entry['threshold']:g} {esc(entry['unit'])}; "
            f"{role}): {esc(nodes)}"
        )
    return "<p>" + ".<br>".join(parts) + ".</p>"


def _unresolved(r: dict) -> str:
    """A plain statement, for the headline, when B cannot resolve the FDR threshold."""
    perm = r["permutations"]
    if perm.get("resolvable") is not False:
        return ""
    return (
        f"<p class='warn'><b>Significance not resolved:</b> {num(perm['used'])} permutations "
        f"cannot resolve {esc(perm['fdr'].upper())} over {perm['n_tests']} tests (needs B >= "
        f"{num(perm['needed'])}; the smallest p-value is {num(perm.get('floor'))}). The "
        "assignments below rest on the permutation floor and are not established; rerun "
        "with analysis.permutations=auto.</p>"
    )


def _headline(r: dict) -> str:
    parts = [_unresolved(r), _live_text(r)]
    informative = r["informative_nodes"]
    rows = []
    for label, hit in r["label_nodes"].items():
        if hit is None:
            rows.append((esc(label), "no significant node", "-", "-", "-"))
        else:
            rows.append(
                (
                    esc(label),
                    f"z{hit['node']}",
                    num(hit["mi"]),
                    ci_text(hit["ci"]),
                    esc(format_pvalue(hit["p_adjusted"], bool(hit.get("at_floor")))),
                )
            )
    if rows:
        parts.append(
            table_html(["label", "node", "MI [nat]", "95% CI", "adjusted p"], rows, left=2)
        )
    significant = {row["node"] for row in r["mi"] if row["significant"]}
    others = [j for j in informative if j not in significant]
    if informative and r["labels"]:
        parts.append(
            "<p>Live nodes related to no analysed label: "
            f"{esc(', '.join(f'z{j}' for j in others) or 'none')}.</p>"
        )
    if r["warnings"]:
        parts.append(f'<p>{len(r["warnings"])} caveat(s): see <a href="#caveats">the end</a>.</p>')
    return f'<div class="headline">{"".join(parts)}</div>'


def _dispersion(r: dict, figures) -> str:
    rows = [
        (f"z{d['node']}", num(d.get("information")), num(d["mad"]), num(d["kl"]),
         num(d.get("live_information")), num(d.get("live_mad")))
        for d in r["dispersion"]
        if d["informative"] or d.get("live_mad") or d.get("live_information")
    ]  # fmt: skip
    text = figure_html("dispersion", figures)
    if rows:
        header = ["node", "information [nat]", "MAD of mu", "mean KL [nat]", "live (info)",
                  "live (MAD)"]  # fmt: skip
        text += table_html(header, rows, left=1)
    return text


def _mi(r: dict, figures) -> str:
    perm = r["permutations"]
    text = ""
    if r["mi"]:
        text += (
            f"<p>Estimator {esc(r['mi'][0]['estimator'])}; p-values from {num(perm['used'])} "
            f"permutations of each label, (1 + #exceed)/(1 + B); {esc(perm['fdr'].upper())} "
            f"over {perm['n_tests']} tests at alpha {perm['alpha']:g} (resolving it needs "
            f"B >= {num(perm['needed'])}). A p-value shown as &lt; x sits at the permutation "
            f"floor 1/(B+1) = {num(perm.get('floor'))}: no shuffle reached the observed MI. "
            "Intervals: half-sampling without replacement, re-centred on the full-sample "
            "estimate.</p>"
        )
    text += figure_html("mi_heatmap", figures) + figure_html("mi_matrix", figures)
    ordered = sorted(r["mi"], key=lambda row: (r["labels"].index(row["label"]), -row["mi"]))
    if ordered:
        rows = [
            (esc(row["label"]), f"z{row['node']}", num(row["n"]), num(row["mi"]),
             ci_text(row["ci"]), esc(format_pvalue(row["p_value"], row.get("at_floor", False))),
             esc(format_pvalue(row["p_adjusted"], row.get("at_floor", False))),
             "yes" if row["significant"] else "no")
            for row in ordered
        ]  # fmt: skip
        header = ["label", "node", "n", "MI [nat]", "95% CI", "p", "adjusted p", "significant"]
        text += table_html(header, rows, left=2, marks=[row["significant"] for row in ordered])
    else:
        text += "<p>No node-label pair was tested.</p>"
    screen = r.get("screen")
    if screen:
        hits = [p for p in screen["pairs"] if p["significant"]]
        listed = ", ".join(f"z{p['node']}-{p['label']}" for p in hits[:30]) or "none"
        text += (
            f"<p class='muted'>Screen of all {r['latent_dim']} nodes with the Gaussian-copula "
            f"estimator ({num(screen['permutations'])} permutations; monotone dependence only): "
            f"{len(hits)} significant pair(s): {esc(listed)}{' ...' if len(hits) > 30 else ''}.</p>"
        )
    for label in r["labels"]:
        text += figure_html(f"scatter_{label}", figures)
    return text


def _attribution(r: dict) -> str:
    """Per label: joint MI and the verdict; per live node: the label that explains it."""
    att = r.get("attribution")
    if not att:
        return "<p>No attribution (no live node or no label).</p>"
    kinds = r.get("label_kinds", {})
    text = (
        f"<p>{esc(att['estimator'])}; unique information of a node = its MI with the label "
        "given the other nodes related to it, tested by shuffling the label among neighbours "
        f"in those nodes ({num(att['permutations']['used'])} permutations, "
        f"{esc(att['settings']['fdr'].upper())}). A node is named only when that is "
        f"significant, its interval clears {att['settings']['floor']:g} nat, it holds at "
        f"least {att['settings']['share']:g} of the joint MI and no other label claims it."
        + (f" Conditioned on: {esc(', '.join(att['condition']))}." if att["condition"] else "")
        + "</p>"
    )
    rows = []
    for label, entry in att["labels"].items():
        verdict = entry["verdict"]
        where = verdict.get("node", verdict.get("nodes"))
        rows.append((esc(label), esc(kinds.get(label, {}).get("kind", "-")),
                     num(entry["joint"]["value"]), esc(verdict["status"]),
                     esc(f"z{where}" if isinstance(where, int) else where), esc(verdict["reason"])))  # fmt: skip
    text += table_html(["label", "kind", "joint MI [nat]", "verdict", "node(s)", "why"], rows, 1)
    rows = [
        (f"z{node}", esc(info["best_label"] or "-"), num(info["mi"]),
         num(info["fraction_explained"]), esc(info["status"]), esc(", ".join(info["mixed_with"])))
        for node, info in att["nodes"].items()
    ]  # fmt: skip
    header = ["node", "best label", "MI [nat]", "fraction explained", "status", "mixed with"]
    return text + table_html(header, rows, left=1)


def _verdict(r: dict) -> str:
    """The verdict box: the worst check first, in plain words (:mod:`diagnosis`)."""
    record = r.get("verdict")
    if not record:
        return ""
    title = {
        "fit": "Fit to interpret: every check passed.",
        "caution": "Interpret with care: see the checks marked caution.",
        "not fit": "NOT fit to interpret: the conclusions below are not established.",
    }[record["status"]]
    rows = [
        (esc(c["check"]), esc(c["status"]), esc(c["message"]))
        for c in sorted(record["checks"], key=lambda c: _SEVERITY.get(c["status"], 0), reverse=True)
    ]
    cls = "headline" if record["status"] == "fit" else "warn"
    return (
        f'<div class="{cls}" id="verdict"><p><b>{esc(title)}</b></p>'
        + table_html(["check", "status", "finding"], rows, left=3)
        + "</div>"
    )


_SEVERITY = {"problem": 3, "caution": 2, "unknown": 1, "ok": 0}


def _diagnosis(r: dict, figures) -> str:
    text = _verdict(r)
    text += figure_html("training", figures) or (
        "<p>No training curves: the checkpoint holds no history, or no model was given.</p>"
    )
    text += figure_html("reconstruction", figures)
    return text


def _provenance(r: dict) -> str:
    prov = r.get("provenance")
    if not prov:
        return "<p>Not recorded.</p>"
    versions = ", ".join(f"{name} {v}" for name, v in prov["versions"].items() if v)
    items = [
        ("software", esc(f"{versions}; Python {prov['python']} on {prov['platform']}")),
        ("data fingerprint", esc(prov.get("data_fingerprint") or "-")),
        ("model trained on", esc(prov.get("trained_on") or "-")),
    ]
    store = prov.get("store")
    if store:
        items.append(("store", esc(
            f"{store['uri']} (format {store['format_version']}, {store['n_spectra']} spectra, "
            f"{store['n_quarantined']} quarantined)")))  # fmt: skip
        items.append(("ingest options", esc(json_text(store.get("preprocessing")))))
    items.append(("analysis configuration", f"<code>{esc(json_text(r.get('config')))}</code>"))
    if prov.get("training_config"):
        items.append(("training configuration",
                      f"<code>{esc(json_text(prov['training_config']))}</code>"))  # fmt: skip
    return table_html(["", ""], [(f"<b>{k}</b>", v) for k, v in items], left=2)


def json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if value is not None else "not recorded"


def _baseline(r: dict, figures) -> str:
    """Live nodes against PCA at equal dimension (``baseline`` in analysis.json)."""
    base = r.get("baseline")
    if not base:
        return "<p>Not computed: it needs the spectra (the store) and an informative node.</p>"

    def score(entry: dict) -> str:
        return f"{entry['r2']:.3f} {ci_text(entry['interval'])}"

    rows = [
        (esc(name), num(e["n"]), score(e["latents"]), score(e["pca"]), score(e["both"]),
         f"z{e['best_node']['node']}: {num(e['best_node']['mi'])}",
         f"PC{e['best_pc']['pc']}: {num(e['best_pc']['mi'])}")
        for name, e in base["labels"].items()
    ]  # fmt: skip
    ratio = ", ".join(f"{v:.3f}" for v in base["explained_variance_ratio"])
    text = (
        f"<p>{base['n_components']} principal components (explained variance ratio {ratio}) "
        f"of the same {base['n_spectra']} selected spectra against the live nodes "
        f"{esc(', '.join(f'z{j}' for j in base['nodes']))}. {esc(base['method'])}.</p>"
    )
    header = ["label", "n", "R^2 live nodes [fold range]", "R^2 PCs", "R^2 both",
              "best node MI [nat]", "best PC MI [nat]"]  # fmt: skip
    text += table_html(header, rows, left=1)
    recon = [
        (name, num(e["median_l1"], 4), num(e["median_l1_over_noise"]),
         ci_text(e["quartiles_l1_over_noise"]), num(e["n"]))
        for name, e in (("model", base["reconstruction"]["model"]),
                        ("PCA", base["reconstruction"]["pca"])) if e
    ]  # fmt: skip
    text += table_html(
        ["reconstruction", "median L1", "median L1 / noise", "quartiles", "n"], recon, left=1
    )
    return text + figure_html("baseline", figures)


def _wavelengths(r: dict, figures) -> str:
    record = r.get("node_wavelengths")
    if not record:
        return "<p>Not computed: it needs the model and at least one live node.</p>"
    rows = []
    for node, entry in record["nodes"].items():
        lines = sorted(
            ((share, name) for name, share in entry["share_near_lines"].items() if share),
            reverse=True,
        )[:3]
        rows.append((
            f"z{node}", num(entry["mean"], 3),
            esc(", ".join(f"{w:.1f}" for w in entry["peak_wavelengths"])),
            esc(", ".join(f"{name} {share:.0%}" for share, name in lines) or "-"),
        ))  # fmt: skip
    header = ["node", "mean sensitivity", "strongest pixels [A]", "share within 3 A of"]
    return (
        f"<p>{esc(record['method'])}.</p>"
        + figure_html("node_wavelengths", figures)
        + table_html(header, rows, left=1)
    )


def _independence(r: dict, figures) -> str:
    ind = r["node_independence"]
    if not ind:
        return "<p>Fewer than two informative nodes: nothing to compare.</p>"
    pair = most_dependent_pair(ind)
    text = figure_html("independence", figures)
    if pair is not None:
        top, a, b = pair
        text += f"<p>Largest MI between two informative nodes: z{a}-z{b}, {top:.3f} nat.</p>"
    return text


def _anomalies(r: dict) -> str:
    an = r["anomalies"]
    if not an:
        return "<p>No anomaly scores (no informative node).</p>"
    labels = [name for name in r["config"]["labels"] if an["top"] and name in an["top"][0]]
    rows = [
        (num(e["rank"]), esc(e["id"]), esc(e["object"]), num(e["score"]),
         *(num(e.get(name)) for name in labels))
        for e in an["top"]
    ]  # fmt: skip
    return (
        f"<p>{esc(an['method'])}; {an['n_scored']} spectra scored (median score "
        f"{num(an['median_score'])}).</p>"
        + table_html(["rank", "id", "object", "score", *labels], rows, left=3)
    )


def _caveats(r: dict) -> str:
    items = [esc(w) for w in r["warnings"]]
    items += [
        "MI is in nats. KSG estimates are nearly unbiased but noisy (small negative values "
        "happen). Raw histogram MI (analysis.json) is biased upward; the indicator map "
        "subtracts its shuffled-label mean and only ranks nodes.",
        "A significant MI says a node carries information about a label, not that it "
        "encodes it alone or linearly; see the scatter plots and traversals.",
        "The copula screen sees only monotone dependence and only flags candidates.",
    ]
    body = "".join(f"<li>{item}</li>" for item in items)
    return f'<div class="warn" id="caveats"><ul>{body}</ul></div>'


def render_report(result: dict, figures: Mapping[str, tuple[bytes, str]]) -> str:
    """The whole report page from an analysis record and ``{name: (png, caption)}``."""
    r = result
    traversals = figure_html("traversals", figures) or (
        "<p>Not drawn: traversals need the model (analyse with --data and --model, or add "
        "--model to --latents) and at least one informative node.</p>"
    )
    sections = [
        ("What was analysed", _what(r) + figure_html("label_histograms", figures)),
        ("Is the model fit to interpret?", _diagnosis(r, figures)),
        ("Headline", _headline(r)),
        ("Which nodes are alive: information and dispersion", _dispersion(r, figures)),
        ("What the nodes know: mutual information with the labels", _mi(r, figures)),
        ("Which node is which label: exclusive attribution", _attribution(r)),
        ("Does the latent space know more than PCA?", _baseline(r, figures)),
        ("Are the informative nodes independent?", _independence(r, figures)),
        ("Anomalous spectra", _anomalies(r)),
        ("Latent traversals", traversals),
        ("What each node reads", _wavelengths(r, figures)),
        ("Caveats and warnings", _caveats(r)),
        ("Provenance", _provenance(r)),
    ]
    body = "".join(f"<h2>{esc(title)}</h2>{content}" for title, content in sections)
    files = ", ".join(["analysis.json", *(f["file"] for f in r["figures"])])
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<title>specray latent-space analysis</title>"
        f"<style>{STYLE}</style></head><body>"
        "<h1>specray latent-space analysis</h1>"
        f"<p class='muted'>Created {esc(r['created'])}. Numbers: {esc(files)} "
        "next to this page.</p>"
        f"{body}</body></html>\n"
    )
