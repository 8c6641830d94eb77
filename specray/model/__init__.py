"""The 1-D convolutional beta-VAE and its loss (plain PyTorch)."""

from specray.model.loss import LossTerms, kl_per_node, kl_weight, vae_loss
from specray.model.vae import (
    SpectrumVAE,
    VAEConfig,
    build_model,
    load_published_checkpoint,
    preset_names,
    resolve_config,
)

__all__ = [
    "LossTerms",
    "SpectrumVAE",
    "VAEConfig",
    "build_model",
    "kl_per_node",
    "kl_weight",
    "load_published_checkpoint",
    "preset_names",
    "resolve_config",
    "vae_loss",
]
