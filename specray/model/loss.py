"""beta-VAE loss: masked L1 reconstruction plus a warmed-up KL term (method.md section 4).

Flux is median-normalised, so the reconstruction term is dimensionless; KL is in nats.

Normalisation and the pressure per latent node
----------------------------------------------
``total = recon + w * kl`` with ``w`` from :func:`kl_weight` (0, then linear up to beta).

* ``"mean"`` (published): recon = sum(|recon - target| * mask) / (B * L), i.e. averaged over
  the batch and ALL L pixels, masked or not; kl = KL summed over nodes / (B * D). Relative
  to a reconstruction summed over pixels, each latent node therefore pays
  ``beta * L / D`` per nat: 0.3 * 327,680 / 128 ~ 768 for the paper network. This strong
  pressure is why most nodes collapse to the prior.
* ``"sum"``: recon summed over pixels and KL summed over nodes, both averaged over the batch
  only; the per-node pressure is just ``beta`` (the textbook beta-VAE).

So ``sum.recon = L * mean.recon`` and ``sum.kl = D * mean.kl``. The pair
(normalisation, beta) is the "disentanglement setting"; changing either changes how many
nodes survive.
"""

from typing import NamedTuple

import torch
from torch import Tensor

from specray.errors import InputError

NORMALISATIONS = ("mean", "sum")


class LossTerms(NamedTuple):
    """Scalar loss tensors: ``total = recon + kl_weight * kl``."""

    total: Tensor
    recon: Tensor
    kl: Tensor


def kl_weight(
    step: int, warmup_start: int = 5000, warmup_end: int = 20000, beta: float = 0.3
) -> float:
    """KL weight at optimiser ``step``: 0 before ``warmup_start``, linear to ``beta`` at
    ``warmup_end``, ``beta`` afterwards (a step change at ``warmup_start`` if both are equal).
    """
    if warmup_end < warmup_start:
        raise InputError(f"warmup_end={warmup_end} is before warmup_start={warmup_start}")
    if step < warmup_start:
        return 0.0
    if step >= warmup_end:
        return float(beta)
    return float(beta) * (step - warmup_start) / (warmup_end - warmup_start)


def _kl_elements(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per sample and node, shape (B, D)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())


def kl_per_node(mu: Tensor, logvar: Tensor) -> Tensor:
    """Mean KL (nats) of each latent node over the batch, shape (D,); collapsed nodes ~0."""
    if mu.shape != logvar.shape or mu.dim() != 2:
        raise InputError(f"mu and logvar must both be (B, D), got {mu.shape} and {logvar.shape}")
    return _kl_elements(mu, logvar).mean(dim=0)


def _check_shapes(recon: Tensor, target: Tensor, mask: Tensor, mu: Tensor, logvar: Tensor) -> None:
    """Raise ValueError unless the loss inputs have consistent shapes."""
    if recon.shape != target.shape:
        raise InputError(f"recon {tuple(recon.shape)} and target {tuple(target.shape)} differ")
    try:
        ok = torch.broadcast_shapes(mask.shape, recon.shape) == recon.shape
    except RuntimeError:
        ok = False
    if not ok:
        raise InputError(f"mask {tuple(mask.shape)} does not broadcast to {tuple(recon.shape)}")
    if mu.shape != logvar.shape or mu.dim() != 2 or mu.shape[0] != recon.shape[0]:
        raise InputError(
            f"mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} must be (B, D) with "
            f"B={recon.shape[0]}"
        )


def vae_loss(
    recon: Tensor,
    target: Tensor,
    mask: Tensor,
    mu: Tensor,
    logvar: Tensor,
    kl_weight: float | Tensor,
    normalisation: str = "mean",
    sample_weights: Tensor | None = None,
) -> LossTerms:
    """Masked-L1 + weighted KL loss; see the module docstring for ``normalisation``.

    ``recon``/``target`` are (B, ...) (e.g. (B, 1, L)); ``mask`` (0/1 or bool) broadcasts to
    them; ``mu``/``logvar`` are (B, D). Masked pixels contribute nothing but still count in
    the "mean" denominator, as published. ``sample_weights`` (B,), if given, scales each
    spectrum's terms (mean 1 over the data set keeps the scale): weighting by
    1 / (spectra of the same object) is the streaming equivalent of the published sampler.
    """
    if normalisation not in NORMALISATIONS:
        raise InputError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
    _check_shapes(recon, target, mask, mu, logvar)
    batch = recon.shape[0]
    l1 = ((recon - target).abs() * mask.to(recon.dtype)).reshape(batch, -1).sum(dim=1)
    kl_each = _kl_elements(mu, logvar).sum(dim=1)
    if sample_weights is not None:
        weights = sample_weights.to(l1.dtype).reshape(batch)
        l1, kl_each = l1 * weights, kl_each * weights
    l1_sum, kl_sum = l1.sum(), kl_each.sum()
    if normalisation == "mean":
        rec, kl = l1_sum / recon.numel(), kl_sum / mu.numel()
    else:
        rec, kl = l1_sum / batch, kl_sum / batch
    return LossTerms(total=rec + kl_weight * kl, recon=rec, kl=kl)
