"""The analysis figures, as PNG bytes (matplotlib, Agg backend; no display needed).

Each function takes plain arrays and returns the bytes of one PNG, so the report can
embed it and the pipeline can also write it to ``OUT/figures/NAME.png``. Pictures follow
method.md 5e: dispersion per node, MI heat maps per label, node-vs-label scatter plots
coloured by a second label, latent traversals around a reference star, and the MI matrix
between informative nodes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from specray.schema import UNITS  # noqa: E402

DPI = 110
SPECTRAL_WINDOWS = (
    ("Mg b", 5160.0, 5190.0),
    ("Na D", 5880.0, 5906.0),
    ("H-alpha", 6550.0, 6576.0),
)
"""Zoom windows for traversals (Angstrom): Mg b 5167-5184, Na D 5890-5896, H-alpha 6562.8."""


def to_png(fig: Figure) -> bytes:
    """Render and close a figure; return the PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def axis_label(name: str) -> str:
    unit = UNITS.get(name, "")
    return f"{name} [{unit}]" if unit else name


def windows_on_grid(start: float, stop: float) -> list[tuple[str, float, float]]:
    """The spectral windows that lie entirely inside [start, stop] Angstrom."""
    return [(name, lo, hi) for name, lo, hi in SPECTRAL_WINDOWS if lo >= start and hi <= stop]


def dispersion_figure(panels: Sequence[tuple[str, np.ndarray, float | None, np.ndarray]]) -> bytes:
    """Bar charts per latent node (log y), one per ``(name, values, threshold, live)``.

    Each panel colours the nodes its own criterion counts as live (red) and draws its
    threshold (dashed) when there is one; so the information and MAD sets show side by side.
    """
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(9, 2.8 * len(panels)), squeeze=False, sharex=True,
        layout="constrained",
    )  # fmt: skip
    for ax, (name, values, threshold, live) in zip(axes[:, 0], panels, strict=True):
        values = np.asarray(values, dtype=np.float64)
        floor = max(float(np.min(values[values > 0])) / 2, 1e-6) if np.any(values > 0) else 1e-6
        colours = np.where(np.asarray(live, bool), "tab:red", "tab:grey")
        ax.bar(np.arange(values.size), np.maximum(values, floor), color=colours, width=0.8)
        if threshold is not None:
            ax.axhline(threshold, color="k", linestyle="--", linewidth=1, label=f"{threshold:g}")
            ax.legend(loc="upper right", fontsize=8, title="threshold", title_fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel(name, fontsize=9)
    axes[0, 0].set_title("Live nodes by each criterion (red: live by that panel's criterion)")
    axes[-1, 0].set_xlabel("latent node")
    return to_png(fig)


def label_histogram_figure(
    kept: Mapping[str, np.ndarray],
    clipped: Mapping[str, np.ndarray],
    placeholders: Mapping[str, int],
) -> bytes:
    """Per label, a histogram of the values analysed and, in red, those the clip removed.

    Placeholder values never reach this plot (they are missing); their count is in the title.
    """
    labels = list(kept)
    fig, axes = plt.subplots(
        1, len(labels), figsize=(2.6 * len(labels) + 0.6, 2.6), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    for ax, label in zip(axes[0], labels, strict=True):
        values = np.asarray(kept[label], dtype=np.float64)
        out = np.asarray(clipped.get(label, ()), dtype=np.float64)
        both = np.concatenate([values, out])
        edges = np.histogram_bin_edges(both, bins=30) if both.size else 10
        ax.hist(values, bins=edges, color="tab:blue", label=f"used ({values.size})")
        if out.size:
            ax.hist(out, bins=edges, color="tab:red", label=f"clipped ({out.size})")
        ax.set_xlabel(axis_label(label), fontsize=8)
        ax.set_title(f"{label}: {placeholders.get(label, 0)} placeholder(s)", fontsize=8)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("spectra")
    return to_png(fig)


def indicator_figure(binnings: Sequence[int], maps: Mapping[str, np.ndarray]) -> bytes:
    """Per label, the histogram-MI indicator map: rows = binnings, each row / its max."""
    labels = list(maps)
    fig, axes = plt.subplots(
        len(labels),
        1,
        figsize=(9, 1.2 + 1.1 * len(labels)),
        squeeze=False,
        sharex=True,
        layout="constrained",
    )
    image = None
    for ax, label in zip(axes[:, 0], labels, strict=True):
        data = np.ma.masked_invalid(np.asarray(maps[label], dtype=np.float64))
        image = ax.imshow(data, aspect="auto", cmap="viridis", vmin=0, vmax=1, origin="lower")
        ax.set_yticks(range(len(binnings)), [str(b) for b in binnings], fontsize=7)
        ax.set_ylabel(f"{label}\nbins", fontsize=8)
    axes[-1, 0].set_xlabel("latent node")
    axes[0, 0].set_title(
        "Histogram MI minus its shuffled-label mean, per binning, divided by the row maximum"
    )
    if image is not None:
        fig.colorbar(image, ax=axes[:, 0].tolist(), fraction=0.025)
    return to_png(fig)


def mi_matrix_figure(
    nodes: Sequence[int],
    labels: Sequence[str],
    mi: np.ndarray,
    significant: np.ndarray,
    estimator: str,
) -> bytes:
    """Node x label MI (nats) with a star on every pair significant after FDR."""
    mi = np.asarray(mi, dtype=np.float64)
    fig, ax = plt.subplots(
        figsize=(1.6 + 1.1 * len(labels), 1.2 + 0.45 * len(nodes)), layout="constrained"
    )
    image = ax.imshow(mi, aspect="auto", cmap="magma_r", vmin=0)
    for i in range(mi.shape[0]):
        for j in range(mi.shape[1]):
            mark = "*" if significant[i, j] else ""
            ax.text(j, i, f"{mi[i, j]:.2f}{mark}", ha="center", va="center", fontsize=8,
                    color="white" if mi[i, j] > 0.6 * max(np.nanmax(mi), 1e-9) else "black")  # fmt: skip
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(nodes)), [f"z{n}" for n in nodes])
    ax.set_title(f"MI [nat], {estimator}; * = significant", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.05)
    return to_png(fig)


def scatter_figure(
    label_values: np.ndarray,
    node_values: np.ndarray,
    colour_values: np.ndarray | None,
    node: int,
    label: str,
    colour_label: str | None,
    title: str,
) -> bytes:
    """Node value against a label, coloured by a second label (grey where it is unknown)."""
    x, y = np.asarray(label_values, np.float64), np.asarray(node_values, np.float64)
    fig, ax = plt.subplots(figsize=(5.6, 4.2), layout="constrained")
    size = 6 if x.size > 2000 else 14
    if colour_values is None:
        ax.scatter(x, y, s=size, color="tab:blue", alpha=0.7, linewidths=0)
    else:
        c = np.asarray(colour_values, np.float64)
        known = np.isfinite(c)
        ax.scatter(x[~known], y[~known], s=size, color="lightgrey", linewidths=0)
        points = ax.scatter(x[known], y[known], c=c[known], s=size, cmap="coolwarm",
                            alpha=0.8, linewidths=0)  # fmt: skip
        fig.colorbar(points, ax=ax, label=axis_label(colour_label or ""))
    ax.set_xlabel(axis_label(label))
    ax.set_ylabel(f"z{node} (mu)")
    ax.set_title(title, fontsize=9)
    return to_png(fig)


def traversal_figure(
    wavelength: np.ndarray,
    spectra: np.ndarray,
    nodes: Sequence[int],
    offsets: Sequence[float],
    windows: Sequence[tuple[str, float, float]],
) -> bytes:
    """Rows = nodes, columns = spectral windows; one decoded spectrum per offset (sigma)."""
    wavelength = np.asarray(wavelength, np.float64)
    cmap = plt.get_cmap("coolwarm")
    span = max(abs(min(offsets)), abs(max(offsets)), 1e-9)
    fig, axes = plt.subplots(
        len(nodes), len(windows), figsize=(3.6 * len(windows) + 1, 1.9 * len(nodes) + 0.6),
        squeeze=False, sharex="col", layout="constrained",
    )  # fmt: skip
    for r, node in enumerate(nodes):
        for c, (name, lo, hi) in enumerate(windows):
            ax = axes[r, c]
            inside = (wavelength >= lo) & (wavelength <= hi)
            for k, offset in enumerate(offsets):
                ax.plot(wavelength[inside], spectra[r, k, inside], linewidth=0.9,
                        color=cmap(0.5 + 0.5 * offset / span), label=f"{offset:+g} sigma")  # fmt: skip
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"z{node}", fontsize=9)
            ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("wavelength [A]", fontsize=8)
    axes[0, -1].legend(fontsize=6, loc="lower right")
    fig.suptitle("Latent traversals: decoded spectra, one node moved, the rest at the reference")
    return to_png(fig)


def independence_figure(nodes: Sequence[int], matrix: np.ndarray, estimator: str) -> bytes:
    """MI between pairs of informative nodes (diagonal blank)."""
    mat = np.asarray(matrix, dtype=np.float64)
    fig, ax = plt.subplots(
        figsize=(1.8 + 0.5 * len(nodes), 1.4 + 0.45 * len(nodes)), layout="constrained"
    )
    image = ax.imshow(np.ma.masked_invalid(mat), cmap="magma_r", vmin=0)
    for i in range(mat.shape[0]):
        for j in range(mat.shape[1]):
            if i != j and np.isfinite(mat[i, j]):
                ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=7)
    ticks = [f"z{n}" for n in nodes]
    ax.set_xticks(range(len(nodes)), ticks, fontsize=8)
    ax.set_yticks(range(len(nodes)), ticks, fontsize=8)
    ax.set_title(f"MI between informative nodes [nat], {estimator}", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.05)
    return to_png(fig)


def baseline_figure(record: Mapping) -> bytes:
    """Latents against PCA at equal dimension: k-NN R^2 per label (bars = mean over the
    folds, whiskers = fold range) and the reconstruction L1 relative to the noise."""
    labels = list(record["labels"])
    kinds = (("latents", "live nodes", "tab:red"), ("pca", "PCs", "tab:blue"),
             ("both", "both", "tab:grey"))  # fmt: skip
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(9, 3.6), width_ratios=[max(len(labels), 1) + 1, 2], layout="constrained"
    )
    x = np.arange(len(labels))
    for i, (key, name, colour) in enumerate(kinds):
        r2 = np.array([record["labels"][lab][key]["r2"] for lab in labels], np.float64)
        span = np.array([record["labels"][lab][key]["interval"] for lab in labels], np.float64)
        whiskers = np.abs(span.T - r2) if labels else None
        left.bar(x + (i - 1) * 0.27, r2, 0.27, yerr=whiskers, color=colour, label=name,
                 capsize=2)  # fmt: skip
    left.set_xticks(x, labels)
    left.axhline(0, color="k", linewidth=0.6)
    left.set_ylabel("k-NN R^2 (5-fold CV)")
    left.set_title(f"Label recovery at k = {record['n_components']}", fontsize=9)
    left.legend(fontsize=7)
    recon = record["reconstruction"]
    names = [name for name in ("model", "pca") if recon.get(name)]
    for i, name in enumerate(names):
        entry = recon[name]
        median, quartiles = entry["median_l1_over_noise"], entry["quartiles_l1_over_noise"]
        if median is None:
            continue
        err = [[median - quartiles[0]], [quartiles[1] - median]]
        right.bar(i, median, 0.6, yerr=err, capsize=3,
                  color="tab:red" if name == "model" else "tab:blue")  # fmt: skip
    right.set_xticks(range(len(names)), ["model" if n == "model" else "PCA" for n in names])
    right.axhline(1.0, color="k", linestyle="--", linewidth=1)
    right.set_ylabel("masked L1 / noise (median, quartiles)")
    right.set_title("Reconstruction", fontsize=9)
    return to_png(fig)


def training_figure(record: Mapping) -> bytes:
    """Per-epoch curves of a training history (``training`` in analysis.json): loss,
    reconstruction and KL (train solid, validation dashed), and the KL weight against beta."""
    epochs = np.asarray(record["epochs"])
    panels = (("loss", "train_loss", "val_loss"), ("reconstruction", "recon", "val_recon"),
              ("KL [nat]", "kl", "val_kl"))  # fmt: skip
    fig, axes = plt.subplots(1, 4, figsize=(12, 2.8), layout="constrained")
    for ax, (title, train, val) in zip(axes, panels, strict=False):
        for key, style, name in ((train, "-", "train"), (val, "--", "validation")):
            values = np.array([np.nan if v is None else v for v in record[key]], np.float64)
            ax.plot(epochs, values, style, label=name)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
    if np.nanmin(np.array(record["train_loss"], dtype=np.float64)) > 0:
        axes[0].set_yscale("log")
    axes[0].legend(fontsize=7)
    weight = axes[3]
    weight.plot(epochs, record["kl_weight"], color="tab:purple")
    weight.axhline(record["beta"], color="k", linestyle="--", linewidth=1)
    weight.set_title(f"KL weight (beta = {record['beta']:g})", fontsize=9)
    weight.set_xlabel("epoch")
    return to_png(fig)


def reconstruction_figure(wavelength: np.ndarray, examples: Mapping) -> bytes:
    """For each example spectrum: input and reconstruction (top) and the residual in units
    of the noise (bottom, masked pixels blank, +-3 marked)."""
    n = len(examples["ids"])
    fig, axes = plt.subplots(
        2 * n, 1, figsize=(10, 2.2 * n + 0.6), sharex=True, squeeze=False,
        height_ratios=[2, 1] * n, layout="constrained",
    )  # fmt: skip
    for i, name in enumerate(examples["ids"]):
        top, bottom = axes[2 * i, 0], axes[2 * i + 1, 0]
        valid = np.asarray(examples["mask"][i], bool)
        flux = np.where(valid, examples["flux"][i], np.nan)
        top.plot(wavelength, flux, color="k", linewidth=0.5, label="input")
        top.plot(wavelength, examples["recon"][i], color="tab:red", linewidth=0.5,
                 label="reconstruction")  # fmt: skip
        top.set_title(f"{name} (SNR {examples['snr'][i]:.0f})", fontsize=8)
        top.legend(fontsize=6, loc="lower left")
        residual = np.where(valid, examples["residual_over_noise"][i], np.nan)
        bottom.plot(wavelength, residual, color="tab:blue", linewidth=0.4)
        for level in (-3, 3):
            bottom.axhline(level, color="k", linestyle=":", linewidth=0.6)
        bottom.set_ylabel("resid. / noise", fontsize=7)
    axes[-1, 0].set_xlabel("wavelength [A]")
    return to_png(fig)


def sensitivity_figure(
    wavelength: np.ndarray,
    sensitivity: np.ndarray,
    nodes: Sequence[int],
    lines: Sequence[tuple[str, float]],
) -> bytes:
    """One panel per live node: the decoder's mean sensitivity to it along the spectrum,
    with the strong lines on the grid marked (dotted, named in the top panel)."""
    k = len(nodes)
    fig, axes = plt.subplots(
        k, 1, figsize=(10, 1.6 * k + 0.8), sharex=True, squeeze=False, layout="constrained"
    )
    shown = [(name, w) for name, w in lines if wavelength[0] <= w <= wavelength[-1]]
    for i, node in enumerate(nodes):
        ax = axes[i, 0]
        ax.plot(wavelength, sensitivity[i], color="tab:red", linewidth=0.5)
        ax.set_ylabel(f"z{node}", fontsize=8)
        for name, w in shown:
            ax.axvline(w, color="k", linestyle=":", linewidth=0.6)
            if i == 0:
                ax.text(w, 1.02, name, transform=ax.get_xaxis_transform(), fontsize=6,
                        ha="center", va="bottom")  # fmt: skip
    axes[-1, 0].set_xlabel("wavelength [A]")
    return to_png(fig)
