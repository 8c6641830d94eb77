"""Is the model fit to interpret? The checks the report states before its conclusions.

Issue 11, item 7: a model that never left the KL-free warm-up, or reconstructs far above
the noise, gets the same confident headline as a good one unless the report says so
first. Three records, all in ``analysis.json``:

* ``training``: the checkpoint's per-epoch history (loss, reconstruction and KL, train and
  validation) with the KL weight at the end of each epoch (recomputed from the run's
  ``loss`` settings), and how much of training ran at the full beta.
* ``verdict``: one entry per check, each ``ok``, ``caution`` or ``problem`` with a plain
  sentence; the status is the worst of them (``fit``, ``caution``, ``not fit``).
* ``provenance``: specray's and the key libraries' versions, the Python and platform, the
  training configuration, the data fingerprints and the store's ingest options.

Thresholds (module constants, documented with their reasons):

* KL weight: ``problem`` if it never reached beta; ``caution`` if fewer than
  ``MIN_STEPS_AT_BETA`` of the optimiser steps ran at the full beta, since nodes need time
  at full pressure to collapse (issue 11: the demo once spent 900 of 3,900 steps there).
* Reconstruction, median masked L1 over the noise's mean |n| (1 = noise-limited):
  ``problem`` above ``RECON_PROBLEM``, ``caution`` above ``RECON_CAUTION`` or when PCA
  at equal dimension reconstructs better than the model.
* Live nodes: ``problem`` when none is live or labels were analysed and no node is
  significantly related to any of them ("no node dominates").
* Dependence between live nodes (KSG, nats): ``problem`` above ``DEPENDENT_PROBLEM``
  (a Gaussian pair with correlation 0.93: the two nodes are one factor), ``caution`` above
  ``DEPENDENT_CAUTION`` (correlation 0.57).
* Significance: ``problem`` when the permutations cannot resolve the FDR threshold.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata

import numpy as np

from specray.model import kl_weight
from specray.model.records import CheckpointMeta

MIN_STEPS_AT_BETA = 0.2
RECON_CAUTION = 3.0
RECON_PROBLEM = 10.0
DEPENDENT_CAUTION = 0.2
DEPENDENT_PROBLEM = 1.0
LIBRARIES = ("specray", "torch", "ray", "numpy", "pyarrow", "astropy", "scikit-learn", "scipy")
STATUS_ORDER = ("ok", "caution", "problem")
VERDICT_TEXT = {"ok": "fit", "caution": "caution", "problem": "not fit"}


# ------------------------------------------------------------------ training


def training_record(meta: CheckpointMeta) -> dict | None:
    """The per-epoch curves of a checkpoint's ``meta`` (:mod:`specray.model.records`)
    with the KL weight at each epoch's last step; None when it holds no history."""
    history = meta.history
    if not history:
        return None
    loss = meta.config.get("loss", {})
    start, end = int(loss.get("warmup_start", 0)), int(loss.get("warmup_end", 0))
    beta = float(loss.get("beta", 0.0))
    steps = [entry.step for entry in history]
    curves = {
        key: [getattr(entry, key) for entry in history]
        for key in ("train_loss", "val_loss", "recon", "val_recon", "kl", "val_kl", "active_nodes")
    }
    last = steps[-1]
    return {
        "epochs": [entry.epoch for entry in history],
        "steps": steps,
        **curves,
        "kl_weight": [kl_weight(step, start, end, beta) for step in steps],
        "beta": beta,
        "warmup_start": start,
        "warmup_end": end,
        "final_kl_weight": kl_weight(last, start, end, beta),
        "fraction_at_beta": max(last - end, 0) / last if last else 0.0,
    }


# ------------------------------------------------------------------ checks


def _check(name: str, status: str, message: str) -> dict:
    return {"check": name, "status": status, "message": message}


def _training_check(training: dict | None) -> dict:
    if training is None:
        return _check("kl_weight", "unknown", "no training history (latent table without a "
                      "model): the KL schedule cannot be checked")  # fmt: skip
    beta, final = training["beta"], training["final_kl_weight"]
    if final < beta * (1 - 1e-9):
        return _check(
            "kl_weight", "problem",
            f"the KL weight reached only {final:.3g} of beta {beta:g} (warm-up ends at step "
            f"{training['warmup_end']}, training stopped at step {training['steps'][-1]}): "
            "the latent space was never pressed to disentangle",
        )  # fmt: skip
    share = training["fraction_at_beta"]
    if share < MIN_STEPS_AT_BETA:
        return _check(
            "kl_weight", "caution",
            f"only {share:.0%} of the optimiser steps ran at the full beta {beta:g}: "
            "unused nodes may not have had time to collapse",
        )  # fmt: skip
    return _check("kl_weight", "ok", f"{share:.0%} of the optimiser steps ran at beta {beta:g}")


def _reconstruction_check(baseline: dict | None) -> dict:
    recon = (baseline or {}).get("reconstruction") or {}
    model, pca = recon.get("model"), recon.get("pca")
    if not model or model.get("median_l1_over_noise") is None:
        return _check("reconstruction", "unknown", "the model's reconstruction was not measured "
                      "(it needs the store and the model)")  # fmt: skip
    ratio = model["median_l1_over_noise"]
    text = f"median reconstruction error {ratio:.2g} x the noise"
    pca_ratio = (pca or {}).get("median_l1_over_noise")
    if pca_ratio is not None:
        text += f" (PCA at equal dimension: {pca_ratio:.2g})"
    if ratio > RECON_PROBLEM:
        return _check("reconstruction", "problem", text + ": the model misses most of the "
                      "structure in the spectra")  # fmt: skip
    if ratio > RECON_CAUTION:
        return _check("reconstruction", "caution", text + ": structure the live nodes do not "
                      "describe remains in the residuals")  # fmt: skip
    if pca_ratio is not None and pca_ratio < ratio:
        return _check("reconstruction", "caution", text + ": PCA reconstructs better")
    return _check("reconstruction", "ok", text)


def _nodes_check(result: dict) -> dict:
    live = result.get("informative_nodes") or []
    if not live:
        return _check("live_nodes", "problem", "no latent node is live: nothing to interpret")
    labels = result.get("labels") or []
    related = sorted({row["label"] for row in result.get("mi") or [] if row["significant"]})
    if labels and not related:
        return _check("live_nodes", "problem", f"{len(live)} live node(s), but none is "
                      "significantly related to any analysed label: no node dominates")  # fmt: skip
    text = f"{len(live)} live node(s)"
    if labels:
        text += f"; significant relations with {', '.join(related)}"
    return _check("live_nodes", "ok", text)


def most_dependent_pair(independence: dict) -> tuple[float, int, int] | None:
    """(MI in nats, node, node) of the most dependent pair in a ``node_independence``
    record, or None when no pair was estimated."""
    nodes, matrix = independence["nodes"], independence["mi"]
    pairs = [
        (matrix[i][j], nodes[i], nodes[j])
        for i in range(len(nodes))
        for j in range(i + 1, len(nodes))
        if matrix[i][j] is not None
    ]
    return max(pairs) if pairs else None


def _dependence_check(independence: dict | None) -> dict:
    if not independence:
        return _check("independence", "unknown", "fewer than two live nodes, or too few "
                      "spectra, to estimate their dependence")  # fmt: skip
    pair = most_dependent_pair(independence)
    if pair is None:
        return _check("independence", "unknown", "no pair of live nodes could be compared")
    top, a, b = pair
    text = f"largest MI between two live nodes: z{a}-z{b}, {top:.2f} nat"
    if top > DEPENDENT_PROBLEM:
        return _check("independence", "problem", text + ": they encode one factor twice")
    if top > DEPENDENT_CAUTION:
        return _check("independence", "caution", text + ": the nodes are not independent")
    return _check("independence", "ok", text)


def _significance_check(permutations: dict) -> dict:
    if permutations.get("resolvable") is False:
        return _check(
            "significance", "problem",
            f"{permutations['used']} permutations cannot resolve {permutations['fdr'].upper()} "
            f"over {permutations['n_tests']} tests (needs {permutations['needed']})",
        )  # fmt: skip
    if permutations.get("used") is None:
        return _check("significance", "unknown", "no node-label pair was tested")
    return _check("significance", "ok", f"{permutations['used']} permutations resolve "
                  f"{permutations['fdr'].upper()} over {permutations['n_tests']} tests")  # fmt: skip


def verdict(result: dict) -> dict:
    """Every check on an analysis record (``analysis.json`` before the verdict), and the
    overall status: the worst check's (``unknown`` checks do not count)."""
    checks = [
        _training_check(result.get("training")),
        _reconstruction_check(result.get("baseline")),
        _nodes_check(result),
        _dependence_check(result.get("node_independence")),
        _significance_check(result.get("permutations") or {}),
    ]
    worst = max(
        (c["status"] for c in checks if c["status"] in STATUS_ORDER),
        key=STATUS_ORDER.index,
        default="ok",
    )
    return {"status": VERDICT_TEXT[worst], "checks": checks}


def verdict_line(record: dict) -> str:
    """One line for the command's summary."""
    flagged = [c for c in record["checks"] if c["status"] in ("caution", "problem")]
    if not flagged:
        return "verdict: fit to interpret (every check passed)"
    head = "NOT FIT TO INTERPRET" if record["status"] == "not fit" else "interpret with care"
    return f"verdict: {head}: " + "; ".join(c["message"] for c in flagged)


# ------------------------------------------------------------------ provenance


def library_versions() -> dict[str, str | None]:
    """Installed versions of specray and the libraries its numbers depend on."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance(meta: CheckpointMeta | None, table_info: dict, store: object | None) -> dict:
    """Where the numbers come from: software, the training configuration, the data."""
    return {
        "versions": library_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "training_config": meta.config if meta else None,
        "data_fingerprint": table_info.get("data_fingerprint"),
        "trained_on": table_info.get("trained_on"),
        "store": None if store is None else {
            "uri": store.uri,
            "format_version": store.format_version,
            "n_spectra": store.n_spectra(),
            "n_quarantined": len(store.quarantine),
            "preprocessing": store.preprocessing,
        },
    }  # fmt: skip


# ------------------------------------------------------------------ reconstruction examples


def example_rows(snr: np.ndarray, count: int = 3) -> list[int]:
    """Positions of ``count`` spectra spanning the SNR range (lowest, median, highest, ...),
    so the examples show the model at the noise levels it meets."""
    finite = np.flatnonzero(np.isfinite(snr))
    if finite.size == 0:
        return []
    order = finite[np.argsort(snr[finite], kind="stable")]
    picks = np.linspace(0, order.size - 1, min(count, order.size)).round().astype(int)
    return [int(order[i]) for i in dict.fromkeys(picks)]


def reconstruct_examples(model, spectra: dict) -> dict:
    """Decode of the mean latent for ``spectra`` (:func:`specray.data.reader.read_spectra`),
    with residuals in units of the noise, sigma = 1/snr on median-normalised flux."""
    import torch

    flux = np.asarray(spectra["flux"], np.float32)
    with torch.inference_mode():
        mu, _ = model.encode(torch.from_numpy(flux).unsqueeze(1))
        recon = model.decode(mu)[:, 0].float().numpy()
    snr = np.asarray(spectra["snr"], np.float64)
    residual = (flux - recon) * snr[:, None]
    valid = np.asarray(spectra["mask"]) > 0
    spread = [
        float(np.median(np.abs(r[v]))) / 0.6745 if v.any() else None
        for r, v in zip(residual, valid, strict=True)
    ]
    return {
        "ids": [str(name) for name in spectra["id"]],
        "snr": snr,
        "flux": flux,
        "recon": recon,
        "residual_over_noise": residual,
        "mask": valid,
        "robust_residual_sigma": spread,
    }


# ------------------------------------------------------------------ for analyze

N_EXAMPLES = 3


def diagnose(
    store_uri: str | None,
    decoder: str | None,
    ids: np.ndarray,
    snr: np.ndarray | None,
    table_info: dict,
    notes: list[str],
) -> tuple[dict, dict[str, tuple[bytes, str]]]:
    """``training``, ``reconstruction_examples`` and ``provenance`` for analysis.json, and
    the ``training`` and ``reconstruction`` figures, for the selected spectra ``ids``."""
    from specray.analysis import figures as fig
    from specray.data.store import StoreError, open_store

    model, meta, checkpoint, store = None, None, None, None
    if decoder:
        from specray.model.checkpoint import load_trained_model

        model, meta, checkpoint = load_trained_model(decoder)
    if store_uri:
        try:
            store = open_store(store_uri)
        except StoreError as error:
            notes.append(f"no reconstruction examples: {error}")
    figures: dict[str, tuple[bytes, str]] = {}
    training = training_record(meta) if meta else None
    if training:
        figures["training"] = (
            fig.training_figure(training),
            "Training: loss, reconstruction and KL per epoch (solid: training, dashed: "
            "validation) and the KL weight against its target beta (dashed).",
        )
    examples = _examples(model, meta, checkpoint, store, ids, snr, notes)
    if examples:
        figures["reconstruction"] = (
            fig.reconstruction_figure(store.grid.wavelength, examples),
            f"{len(examples['ids'])} selected spectra at low, median and high SNR: input "
            "(black) and the decode of its mean latent (red); below, the residual in units "
            "of the noise (1/SNR), +-3 dotted. Structure in the residuals is what the "
            "model does not describe.",
        )
        examples = {key: examples[key] for key in ("ids", "snr", "robust_residual_sigma")}
    record = {
        "training": training,
        "reconstruction_examples": examples,
        "provenance": provenance(meta, table_info, store),
    }
    return record, figures


def _examples(model, meta, checkpoint, store, ids, snr, notes) -> dict | None:
    """Reconstructions of a few selected spectra, or None (with a note saying why)."""
    if model is None or store is None:
        return None
    if snr is None:
        notes.append("no reconstruction examples: the latent table has no snr column")
        return None
    from specray.analysis.encode import check_grid
    from specray.model.checkpoint import checkpoint_grid

    check_grid(checkpoint_grid(meta), store.grid, checkpoint, store.uri)
    rows = example_rows(np.asarray(snr, np.float64), N_EXAMPLES)
    if not rows:
        notes.append("no reconstruction examples: no selected spectrum has a finite snr")
        return None
    from specray.data.reader import read_spectra

    spectra = read_spectra(store, [str(ids[i]) for i in rows])
    return reconstruct_examples(model, spectra)
