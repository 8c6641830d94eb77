"""The analysis report: ONE self-contained HTML page (inline CSS, figures as base64 PNG).

Read top to bottom: what was analysed, whether the model is fit to interpret (the
verdict box, training curves, reconstructions), the headline (which node is which label), then
the evidence (dispersion, MI tables and significance, independence, anomalies,
traversals), the caveats and the provenance. Everything comes from the ``analysis.json`` record
(:mod:`specray.analysis.analyze`) and the figures' PNG bytes; nothing is fetched from
anywhere when the page is opened.

The markup is the Jinja template ``templates/report.html``, autoescaped: ids, object
names, label names and paths come from FITS headers, file names and catalogues, and reach
the page as text whatever they contain. This module only turns the record into the
plain values the template shows (numbers formatted, rows ordered).
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
from markupsafe import Markup

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
    return str(value)


def ci_text(ci: Sequence[float | None] | None) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return "-"
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if value is not None else "not recorded"


def znodes(nodes: Sequence[int]) -> str:
    """``[3, 25]`` -> ``"z3, z25"``."""
    return ", ".join(f"z{j}" for j in nodes)


def _bold_key(item: tuple[str, Any]) -> tuple[Markup, Any]:
    key, value = item
    return Markup("<b>{}</b>").format(key), value


@functools.cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("specray.analysis", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters.update(num=num, g=lambda value: f"{value:g}", znodes=znodes)
    environment.filters["bold_key"] = _bold_key
    return environment.get_template("report.html")


# -- the record as the values each section shows


def _what(r: dict) -> dict:
    src, sel = r["source"], r["selection"]
    items = [
        ("latent table", src.get("latents")),
        ("model checkpoint", src.get("checkpoint") or src.get("model") or "not given"),
        ("trained", f"epoch {num(src.get('epoch'))}, step {num(src.get('step'))}"
         if src.get("epoch") is not None else "-"),
        ("spectra store", src.get("store") or src.get("data") or "-"),
    ]  # fmt: skip
    grid = src.get("grid")
    if grid:
        stop = grid["start"] + (grid["n_native"] - 1) * grid["step"]
        text = f"{grid['name']}: {grid['start']:g}-{stop:g} A, {grid['n_native']} pixels"
        items.append(("wavelength grid", text))
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
    items.append(("selection", rule + (clip_text or ", no clipping")))
    per_label = [
        (name, num(v.get("n_placeholder")), num(v["n_finite"]), num(v["n_clipped"]), num(v["n"]))
        for name, v in sel["per_label"].items()
    ]
    return {"what": items, "per_label": per_label}


def _live(r: dict) -> dict:
    """How many nodes are live, by the analysed criterion first, then the other one."""
    sets = r.get("live_nodes") or {}
    ordered = sorted(sets.items(), key=lambda item: not item[1]["analysed"])
    live = [
        {**entry, "name": name, "role": "analysed" if entry["analysed"] else "for comparison"}
        for name, entry in ordered
    ]
    return {"live": live}


def _headline(r: dict) -> dict:
    rows = []
    for label, hit in r["label_nodes"].items():
        if hit is None:
            rows.append((label, "no significant node", "-", "-", "-"))
        else:
            at_floor = bool(hit.get("at_floor"))
            p = format_pvalue(hit["p_adjusted"], at_floor)
            rows.append((label, f"z{hit['node']}", num(hit["mi"]), ci_text(hit["ci"]), p))
    significant = {row["node"] for row in r["mi"] if row["significant"]}
    unrelated = [j for j in r["informative_nodes"] if j not in significant]
    return {"label_rows": rows, "unrelated": unrelated}


def _dispersion(r: dict) -> dict:
    rows = [
        (f"z{d['node']}", num(d.get("information")), num(d["mad"]), num(d["kl"]),
         num(d.get("live_information")), num(d.get("live_mad")))
        for d in r["dispersion"]
        if d["informative"] or d.get("live_mad") or d.get("live_information")
    ]  # fmt: skip
    return {"dispersion": rows}


def _mi(r: dict) -> dict:
    ordered = sorted(r["mi"], key=lambda row: (r["labels"].index(row["label"]), -row["mi"]))
    rows = [
        (row["label"], f"z{row['node']}", num(row["n"]), num(row["mi"]), ci_text(row["ci"]),
         format_pvalue(row["p_value"], row.get("at_floor", False)),
         format_pvalue(row["p_adjusted"], row.get("at_floor", False)),
         "yes" if row["significant"] else "no")
        for row in ordered
    ]  # fmt: skip
    hits = [p for p in (r.get("screen") or {}).get("pairs", []) if p["significant"]]
    listed = ", ".join(f"z{p['node']}-{p['label']}" for p in hits[:30])
    return {
        "mi_rows": rows,
        "mi_marks": [row["significant"] for row in ordered],
        "screen_hits": hits,
        "screen_listed": listed,
    }


def _attribution(r: dict) -> dict:
    """Per label: joint MI and the verdict; per live node: the label that explains it."""
    att = r.get("attribution")
    if not att:
        return {}
    kinds = r.get("label_kinds", {})
    labels = []
    for label, entry in att["labels"].items():
        verdict = entry["verdict"]
        where = verdict.get("node", verdict.get("nodes"))
        labels.append((label, kinds.get(label, {}).get("kind", "-"), num(entry["joint"]["value"]),
                       verdict["status"], f"z{where}" if isinstance(where, int) else where,
                       verdict["reason"]))  # fmt: skip
    nodes = [
        (f"z{node}", info["best_label"] or "-", num(info["mi"]),
         num(info["fraction_explained"]), info["status"], ", ".join(info["mixed_with"]))
        for node, info in att["nodes"].items()
    ]  # fmt: skip
    return {"attribution_labels": labels, "attribution_nodes": nodes}


_SEVERITY = {"problem": 3, "caution": 2, "unknown": 1, "ok": 0}
_VERDICT_TITLES = {
    "fit": "Fit to interpret: every check passed.",
    "caution": "Interpret with care: see the checks marked caution.",
    "not fit": "NOT fit to interpret: the conclusions below are not established.",
}


def _verdict(r: dict) -> dict:
    """The verdict box: the worst check first, in plain words (:mod:`diagnosis`)."""
    record = r.get("verdict")
    if not record:
        return {"verdict": None}
    checks = sorted(record["checks"], key=lambda c: _SEVERITY.get(c["status"], 0), reverse=True)
    return {
        "verdict": {
            "title": _VERDICT_TITLES[record["status"]],
            "css": "headline" if record["status"] == "fit" else "warn",
            "rows": [(c["check"], c["status"], c["message"]) for c in checks],
        }
    }


def _provenance(r: dict) -> dict:
    prov = r.get("provenance")
    if not prov:
        return {"provenance": None}
    versions = ", ".join(f"{name} {v}" for name, v in prov["versions"].items() if v)
    items = [
        ("software", f"{versions}; Python {prov['python']} on {prov['platform']}"),
        ("data fingerprint", prov.get("data_fingerprint") or "-"),
        ("model trained on", prov.get("trained_on") or "-"),
    ]
    store = prov.get("store")
    if store:
        items.append(("store",
            f"{store['uri']} (format {store['format_version']}, {store['n_spectra']} spectra, "
            f"{store['n_quarantined']} quarantined)"))  # fmt: skip
        items.append(("ingest options", json_text(store.get("preprocessing"))))
    code = Markup("<code>{}</code>")
    items.append(("analysis configuration", code.format(json_text(r.get("config")))))
    if prov.get("training_config"):
        items.append(("training configuration", code.format(json_text(prov["training_config"]))))
    return {"provenance": items}


def _baseline(r: dict) -> dict:
    """Live nodes against PCA at equal dimension (``baseline`` in analysis.json)."""
    base = r.get("baseline")
    if not base:
        return {}

    def score(entry: dict) -> str:
        return f"{entry['r2']:.3f} {ci_text(entry['interval'])}"

    rows = [
        (name, num(e["n"]), score(e["latents"]), score(e["pca"]), score(e["both"]),
         f"z{e['best_node']['node']}: {num(e['best_node']['mi'])}",
         f"PC{e['best_pc']['pc']}: {num(e['best_pc']['mi'])}")
        for name, e in base["labels"].items()
    ]  # fmt: skip
    recon = [
        (name, num(e["median_l1"], 4), num(e["median_l1_over_noise"]),
         ci_text(e["quartiles_l1_over_noise"]), num(e["n"]))
        for name, e in (("model", base["reconstruction"]["model"]),
                        ("PCA", base["reconstruction"]["pca"])) if e
    ]  # fmt: skip
    explained = ", ".join(f"{v:.3f}" for v in base["explained_variance_ratio"])
    return {"baseline_rows": rows, "baseline_recon": recon, "explained": explained}


def _wavelengths(r: dict) -> dict:
    record = r.get("node_wavelengths")
    if not record:
        return {}
    rows = []
    for node, entry in record["nodes"].items():
        lines = sorted(
            ((share, name) for name, share in entry["share_near_lines"].items() if share),
            reverse=True,
        )[:3]
        rows.append((
            f"z{node}", num(entry["mean"], 3),
            ", ".join(f"{w:.1f}" for w in entry["peak_wavelengths"]),
            ", ".join(f"{name} {share:.0%}" for share, name in lines) or "-",
        ))  # fmt: skip
    return {"wavelength_rows": rows}


def _independence(r: dict) -> dict:
    ind = r["node_independence"]
    return {"pair": most_dependent_pair(ind) if ind else None}


def _anomalies(r: dict) -> dict:
    an = r["anomalies"]
    if not an:
        return {}
    labels = [name for name in r["config"]["labels"] if an["top"] and name in an["top"][0]]
    rows = [
        (num(e["rank"]), e["id"], e["object"], num(e["score"]),
         *(num(e.get(name)) for name in labels))
        for e in an["top"]
    ]  # fmt: skip
    return {"anomaly_labels": labels, "anomaly_rows": rows}


CAVEATS = (
    "MI is in nats. KSG estimates are nearly unbiased but noisy (small negative values "
    "happen). Raw histogram MI (analysis.json) is biased upward; the indicator map "
    "subtracts its shuffled-label mean and only ranks nodes.",
    "A significant MI says a node carries information about a label, not that it "
    "encodes it alone or linearly; see the scatter plots and traversals.",
    "The copula screen sees only monotone dependence and only flags candidates.",
)

_SECTIONS = (_what, _live, _headline, _dispersion, _mi, _attribution, _verdict, _provenance,
             _baseline, _wavelengths, _independence, _anomalies)  # fmt: skip


def render_report(result: dict, figures: Mapping[str, tuple[bytes, str]]) -> str:
    """The whole report page from an analysis record and ``{name: (png, caption)}``."""
    view: dict[str, Any] = {}
    for section in _SECTIONS:
        view.update(section(result))
    view["caveats"] = [*result["warnings"], *CAVEATS]
    view["files"] = ", ".join(["analysis.json", *(f["file"] for f in result["figures"])])
    shown = {
        name: {"data": base64.b64encode(png).decode("ascii"), "caption": caption}
        for name, (png, caption) in figures.items()
    }
    page = _template().render(page=True, r=result, view=view, figures=shown, style=Markup(STYLE))
    return page


def render_comparison(comparison: dict, previous: str | None) -> str:
    """The retrain section comparing this analysis with the previous one (HTML)."""
    rows = [
        (label, c["node_before"], c["node_now"], c["mi_before"], c["mi_now"])
        for label, c in comparison["labels"].items()
    ]
    module = _template().make_module({"page": False, "r": {}, "view": {}, "figures": {}})
    section = module.comparison_section(
        {"rows": rows, "new_anomalies": comparison["new_anomalies"]}, previous
    )
    return str(section)
