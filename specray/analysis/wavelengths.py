"""What each node reads: the decoder's sensitivity to each live node along the spectrum.

For live node j and pixel lambda, ``sensitivity_j(lambda)`` is the mean over the analysed
spectra of |d recon(lambda) / d z_j| x s_j: how much the decoded, median-normalised flux
moves when node j moves by s_j, the node's standard deviation over those spectra (so
nodes of different spread compare on one scale; unit: normalised flux per 1 sigma of the
node). The derivative is a central finite difference of the decoder around each
spectrum's mean latent, step ``FD_STEP`` x s_j (the decoder is smooth; the step only has
to be small against the node's spread).

It runs as Ray Data batch work (issue 11, item 8): the mean latents are a dataset, a pool
of actors each loads the checkpoint once, and each batch returns only its summed
sensitivity (k x L), so a whole archive costs 2k decodes per spectrum and no spectra
travel. On the synthetic survey, an RV node should read every line (a Doppler shift moves
all of them), a Teff node the Balmer lines and the continuum slope.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from specray.progress import Progress

FD_STEP = 0.05
BATCH_SIZE = 64
STRONG_LINES = (
    ("Ca II K", 3933.66), ("Ca II H", 3968.47), ("H-delta", 4101.73), ("H-gamma", 4340.46),
    ("H-beta", 4861.32), ("Mg b", 5172.68), ("Na D", 5892.94), ("H-alpha", 6562.79),
)  # fmt: skip
"""Air wavelengths (Angstrom, NIST ASD) marked on the figure; Mg b and Na D: triplet's
middle line and doublet centre."""


def decoder_sensitivity(model, mu: np.ndarray, nodes: Sequence[int], scale: np.ndarray):
    """Sum over the rows of ``mu`` (n, D) of |d decode / d z_j| x scale_j for each j in
    ``nodes``: shape (len(nodes), L). ``model`` has ``decode((n, D) tensor) -> (n, 1, L)``."""
    device = next(model.parameters()).device
    z = torch.as_tensor(np.asarray(mu, np.float32), device=device)
    out = []
    with torch.inference_mode():
        for node, s in zip(nodes, scale, strict=True):
            step = FD_STEP * float(s)
            up, down = z.clone(), z.clone()
            up[:, node] += step
            down[:, node] -= step
            slope = (model.decode(up) - model.decode(down))[:, 0].float() / (2 * step)
            out.append((slope.abs() * float(s)).sum(dim=0).cpu().numpy())
    return np.stack(out).astype(np.float64)


class _Sensitivity:
    """Ray Data actor: loads the checkpoint once; each batch -> its summed sensitivity."""

    def __init__(self, checkpoint: str, nodes: list[int], scale: np.ndarray, use_gpu: bool):
        from specray.model.checkpoint import load_trained_model

        self.model = load_trained_model(checkpoint).model
        device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        self.model.to(device).eval()
        self.nodes, self.scale = nodes, scale

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        mu = np.stack(list(batch["mu"])) if batch["mu"].dtype == object else batch["mu"]
        total = decoder_sensitivity(self.model, mu, self.nodes, self.scale)
        return {"total": total[None], "count": np.array([len(mu)])}


def node_sensitivity(
    checkpoint: str, mu: np.ndarray, nodes: Sequence[int], actors: int = 0
) -> np.ndarray:
    """Mean sensitivity (len(nodes), L) of a checkpoint's decoder to ``nodes`` over the
    mean latents ``mu`` (n, D), computed by Ray Data actors."""
    import ray

    from specray.analysis.encode import actor_count
    from specray.runtime import ensure_ray

    nodes = [int(j) for j in nodes]
    scale = np.asarray(mu, np.float64)[:, nodes].std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    ensure_ray()
    use_gpu = ray.cluster_resources().get("GPU", 0) > 0
    pool = ray.data.ActorPoolStrategy(min_size=1, max_size=actor_count(actors, use_gpu))
    dataset = ray.data.from_items([{"mu": row} for row in np.asarray(mu, np.float32)])
    sums = dataset.map_batches(
        _Sensitivity,
        fn_constructor_kwargs={"checkpoint": checkpoint, "nodes": nodes, "scale": scale,
                               "use_gpu": use_gpu},
        batch_size=BATCH_SIZE, batch_format="numpy",
        compute=pool,
        num_cpus=1, num_gpus=1 if use_gpu else 0,
    )  # fmt: skip
    total, count = 0.0, 0
    with Progress("node wavelengths", len(mu), "spectra") as shown:
        for batch in sums.iter_batches(batch_size=None, batch_format="numpy"):
            total = total + np.sum(np.stack(list(batch["total"])), axis=0)
            count += int(np.sum(batch["count"]))
            shown.advance(int(np.sum(batch["count"])))
    return np.asarray(total) / max(count, 1)


def summarise(wavelength: np.ndarray, sensitivity: np.ndarray, nodes: Sequence[int]) -> dict:
    """The ``node_wavelengths`` record: per node its mean sensitivity, the five strongest
    pixels' wavelengths (Angstrom) and the share of its sensitivity within 3 A of each
    strong line on the grid."""
    lines = [(name, w) for name, w in STRONG_LINES if wavelength[0] <= w <= wavelength[-1]]
    out = {}
    for row, node in zip(sensitivity, nodes, strict=True):
        total = float(row.sum())
        peaks = np.argsort(row)[::-1][:5]
        share = {
            name: float(row[np.abs(wavelength - w) <= 3.0].sum() / total) if total > 0 else None
            for name, w in lines
        }
        out[str(node)] = {
            "mean": float(row.mean()),
            "peak_wavelengths": [float(wavelength[i]) for i in peaks],
            "share_near_lines": share,
        }
    return {
        "method": "mean |d decode / d z_j| x std(z_j) over the analysed spectra (central "
        f"difference, step {FD_STEP:g} std), normalised flux per 1 sigma of the node",
        "nodes": out,
    }
