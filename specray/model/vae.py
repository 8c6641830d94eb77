"""1-D convolutional beta-VAE for spectra (method.md section 3).

The architecture is described by a small set of numbers (:class:`VAEConfig`):

* ``input_length`` -- pixels per spectrum. The network zero-pads its input on the right to
  ``padded_length``, the next multiple of ``2 ** n_stride2`` (so every stride-2 layer halves
  it exactly), and crops the reconstruction back to ``input_length``. The padding is like
  the grid's own (zeros, outside the mask), so any preset runs on any grid; the ``paper``
  preset on the published 327,680-pixel grid pads nothing;
* ``channels``, ``kernels``, ``strides`` -- one entry per encoder layer: output channels,
  (odd) kernel size and stride (1 or 2). Encoder layer ``i`` (1-based) is
  ``conv{i} = Sequential(Conv1d(c[i-1], c[i], k[i], s[i], padding=(k[i]-1)//2), LeakyReLU(0.1))``
  with ``c[0] = 1``; a stride-2 layer halves the length exactly, a stride-1 layer keeps it;
* ``latent_dim`` -- size of the bottleneck.

The flattened size is ``channels[-1] * padded_length // 2 ** n_stride2``; ``fc11`` (mu) and
``fc12`` (log-variance) map it to the latent space and ``fc2`` maps back, with no activation.

The decoder mirrors the encoder layer by layer: ``deconv{i}`` undoes ``conv{i}``, i.e. it maps
``c[i] -> c[i-1]`` and is ``ConvTranspose1d(k4, s2, p1)`` (doubles the length) where ``conv{i}``
had stride 2, or ``ConvTranspose1d(k3, s1, p1)`` where it had stride 1. The decoder runs
``deconv{n}`` first (right after ``fc2``) and ``deconv1`` last, followed by ``predict0 =
Conv1d(1, 1, k3, p1)`` with linear output. Each deconv is ``Sequential(layer, LeakyReLU(0.1))``.

For the ``paper`` preset this gives exactly the published module names and shapes:
``deconv15`` 512->512 (k3, s1), ``deconv14`` 512->256, ``deconv13`` 256->128, ``deconv12`` and
``deconv11`` 128->128, ``deconv10`` 128->64, ``deconv9``/``deconv8`` 64->64, ``deconv7``
64->32, ``deconv6``/``deconv5`` 32->32, ``deconv4`` 32->16, ``deconv3``/``deconv2`` 16->16
and ``deconv1`` 16->1, so the published checkpoint loads with ``strict=True``.
"""

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from specray.errors import InputError

LEAKY_SLOPE = 0.1


@dataclass(frozen=True)
class VAEConfig:
    """Resolved architecture; ``build_model(**cfg.to_dict())`` rebuilds the same network."""

    input_length: int
    latent_dim: int
    channels: tuple[int, ...]
    kernels: tuple[int, ...]
    strides: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        # Normalise lists (e.g. from JSON/YAML) to tuples so the config stays hashable.
        for name in ("channels", "kernels", "strides"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        self._validate()

    def _validate(self) -> None:
        n = len(self.channels)
        if n == 0:
            raise InputError("channels must list at least one encoder layer")
        if len(self.kernels) != n or len(self.strides) != n:
            raise InputError(
                f"channels, kernels and strides must have one entry per encoder layer; got "
                f"{n}, {len(self.kernels)} and {len(self.strides)}"
            )
        if any(c < 1 for c in self.channels):
            raise InputError(f"channels must be positive, got {self.channels}")
        if any(k < 1 or k % 2 == 0 for k in self.kernels):
            raise InputError(f"kernels must be odd and positive, got {self.kernels}")
        if any(s not in (1, 2) for s in self.strides):
            raise InputError(f"strides must be 1 or 2, got {self.strides}")
        if self.latent_dim < 1:
            raise InputError(f"latent_dim must be positive, got {self.latent_dim}")
        if self.input_length < 1:
            raise InputError(f"input_length must be positive, got {self.input_length}")

    @property
    def n_stride2(self) -> int:
        """Number of stride-2 encoder layers."""
        return sum(1 for s in self.strides if s == 2)

    @property
    def length_multiple(self) -> int:
        """Stride-2 layers divide lengths that are a multiple of this (``2 ** n_stride2``)."""
        return 2**self.n_stride2

    @property
    def padded_length(self) -> int:
        """Pixels the convolutions see: ``input_length`` rounded up to ``length_multiple``."""
        return -(-self.input_length // self.length_multiple) * self.length_multiple

    @property
    def bottleneck_length(self) -> int:
        """Length of the encoder output (20 for the paper preset)."""
        return self.padded_length // self.length_multiple

    @property
    def flat_size(self) -> int:
        """Number of features entering ``fc11``/``fc12`` (10,240 for the paper preset)."""
        return self.channels[-1] * self.bottleneck_length

    def to_dict(self) -> dict:
        """Plain, JSON-friendly dict (lists, ints) for checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


_PAPER = VAEConfig(
    input_length=327_680,
    latent_dim=128,
    channels=(16, 16, 16, 32, 32, 32, 64, 64, 64, 128, 128, 128, 256, 512, 512),
    kernels=(7, 5, 5) + (3,) * 12,
    strides=(2,) * 14 + (1,),
)

# Small network for the 16,384-pixel ``demo`` grid: same design, 10 stride-2 layers
# (16,384 -> 16 samples), narrower channels (about 0.16 M parameters) and a 32-node latent
# space. One Adam step at batch 32 takes ~0.07 s on a 2-core CPU.
_DEMO = VAEConfig(
    input_length=16_384,
    latent_dim=32,
    channels=(4, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64),
    kernels=(7, 5, 5) + (3,) * 8,
    strides=(2,) * 10 + (1,),
)

_PRESETS: dict[str, VAEConfig] = {"paper": _PAPER, "demo": _DEMO}


def preset_names() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(_PRESETS)


def resolve_config(preset: str = "paper", **overrides) -> VAEConfig:
    """Preset architecture with ``overrides`` (any :class:`VAEConfig` field) applied."""
    if preset not in _PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {preset_names()}")
    unknown = set(overrides) - set(VAEConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown architecture option(s) {sorted(unknown)}")
    return replace(_PRESETS[preset], **overrides)


def _act() -> nn.LeakyReLU:
    return nn.LeakyReLU(LEAKY_SLOPE)


class SingleChannelConv1d(nn.Conv1d):
    """``Conv1d(1, 1, k, padding=(k-1)//2)`` with a fast CPU path; same parameters and keys.

    On CPU, PyTorch's convolution with one input and one output channel is pathologically
    slow (measured ~50x slower than the same maths as a grouped convolution, and it dominated
    a whole training step of the demo network). On CPU we therefore fold the batch into the
    channel axis and run one group per spectrum, which computes exactly the same function.
    """

    def __init__(self, kernel_size: int = 3) -> None:
        super().__init__(1, 1, kernel_size, padding=(kernel_size - 1) // 2)

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu" or x.dim() != 3:
            return super().forward(x)
        b, _, length = x.shape
        k = self.kernel_size[0]
        weight = self.weight.expand(b, 1, k)
        bias = self.bias.expand(b) if self.bias is not None else None
        out = F.conv1d(x.reshape(1, b, length), weight, bias, padding=self.padding, groups=b)
        return out.view(b, 1, -1)


def _variance_preserving_init(module: nn.Module) -> None:
    """He initialisation for LeakyReLU(0.1), zero biases.

    PyTorch's default initialisation scales each layer's output by about 1/sqrt(3); through
    11-15 stacked convolutions the signal (and the gradient) all but vanishes, and a fresh
    network settles on the mean spectrum, ignoring its latent code. Scaling each layer's
    weights by gain / sqrt(fan-in) keeps the variance through the stack. For a transposed
    convolution each output sums ``in_channels * kernel / stride`` inputs, which is its
    true fan-in. ``fc11``/``fc12``/``fc2`` and ``predict0`` feed no activation (gain 1).
    """
    if isinstance(module, nn.ConvTranspose1d):
        fan_in = module.in_channels * module.kernel_size[0] / module.stride[0]
        gain = nn.init.calculate_gain("leaky_relu", LEAKY_SLOPE)
    elif isinstance(module, SingleChannelConv1d):
        fan_in, gain = module.kernel_size[0], 1.0
    elif isinstance(module, nn.Conv1d):
        fan_in = module.in_channels * module.kernel_size[0]
        gain = nn.init.calculate_gain("leaky_relu", LEAKY_SLOPE)
    elif isinstance(module, nn.Linear):
        fan_in, gain = module.in_features, 1.0
    else:
        return
    nn.init.normal_(module.weight, 0.0, gain / fan_in**0.5)
    nn.init.zeros_(module.bias)


class SpectrumVAE(nn.Module):
    """Convolutional beta-VAE on (B, 1, L) spectra; see the module docstring for the layout."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.arch = cfg
        ch = (1, *cfg.channels)
        n = len(cfg.channels)
        # Registration order mirrors the published checkpoint: conv1..n, fc11, fc12, fc2,
        # deconv{n}..deconv1, predict0.
        for i in range(1, n + 1):
            k, s = cfg.kernels[i - 1], cfg.strides[i - 1]
            conv = nn.Conv1d(ch[i - 1], ch[i], k, stride=s, padding=(k - 1) // 2)
            self.add_module(f"conv{i}", nn.Sequential(conv, _act()))
        self.fc11 = nn.Linear(cfg.flat_size, cfg.latent_dim)
        self.fc12 = nn.Linear(cfg.flat_size, cfg.latent_dim)
        self.fc2 = nn.Linear(cfg.latent_dim, cfg.flat_size)
        for i in range(n, 0, -1):
            if cfg.strides[i - 1] == 2:
                layer = nn.ConvTranspose1d(ch[i], ch[i - 1], 4, stride=2, padding=1)
            else:
                layer = nn.ConvTranspose1d(ch[i], ch[i - 1], 3, stride=1, padding=1)
            self.add_module(f"deconv{i}", nn.Sequential(layer, _act()))
        self.predict0 = SingleChannelConv1d(3)
        self._n = n
        self.apply(_variance_preserving_init)

    def config(self) -> dict:
        """The resolved architecture as a plain dict; ``build_model(**model.config())``."""
        return self.arch.to_dict()

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 1, L) spectra -> (mu, logvar), each (B, latent_dim)."""
        self._check_input(x)
        h = F.pad(x, (0, self.arch.padded_length - self.arch.input_length))
        for i in range(1, self._n + 1):
            h = getattr(self, f"conv{i}")(h)
        h = h.flatten(1)
        return self.fc11(h), self.fc12(h)

    def decode(self, z: Tensor) -> Tensor:
        """(B, latent_dim) latent codes -> (B, 1, L) reconstructions."""
        h = self.fc2(z).view(z.shape[0], self.arch.channels[-1], self.arch.bottleneck_length)
        for i in range(self._n, 0, -1):
            h = getattr(self, f"deconv{i}")(h)
        return self.predict0(h)[..., : self.arch.input_length]

    @staticmethod
    def reparameterise(mu: Tensor, logvar: Tensor) -> Tensor:
        """Sample z = mu + eps * exp(logvar / 2), eps ~ N(0, 1)."""
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return (reconstruction, mu, logvar); samples z in training mode, uses mu in eval."""
        mu, logvar = self.encode(x)
        z = self.reparameterise(mu, logvar) if self.training else mu
        return self.decode(z), mu, logvar

    def _check_input(self, x: Tensor) -> None:
        expected = (1, self.arch.input_length)
        if x.dim() != 3 or tuple(x.shape[1:]) != expected:
            raise InputError(
                f"expected input of shape (B, 1, {self.arch.input_length}), got {tuple(x.shape)}"
            )


def build_model(preset: str = "paper", **overrides) -> SpectrumVAE:
    """Build a :class:`SpectrumVAE` from a preset plus architecture overrides.

    ``overrides`` are :class:`VAEConfig` fields: ``input_length``, ``latent_dim``,
    ``channels``, ``kernels``, ``strides``. Raises ``ValueError`` for an invalid architecture,
    e.g. an even kernel or a stride other than 1 or 2.
    """
    return SpectrumVAE(resolve_config(preset, **overrides))


def _source_name(path_or_file: str | os.PathLike | BinaryIO) -> str:
    if isinstance(path_or_file, str | os.PathLike):
        return str(Path(path_or_file))
    return str(getattr(path_or_file, "name", repr(path_or_file)))


def _strip_prefix(state: dict[str, Tensor], prefix: str = "module.") -> dict[str, Tensor]:
    """Drop the ``module.`` prefix that ``nn.DataParallel`` adds to every key."""
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}


def _first_mismatch(model: nn.Module, state: dict[str, Tensor]) -> str | None:
    """Describe the first missing, unexpected or wrongly shaped key, or None if all match."""
    own = model.state_dict()
    for key, value in own.items():
        if key not in state:
            return f"missing key {key!r}"
        if tuple(state[key].shape) != tuple(value.shape):
            return (
                f"key {key!r} has shape {tuple(state[key].shape)}, "
                f"the paper network expects {tuple(value.shape)}"
            )
    extra = [k for k in state if k not in own]
    return f"unexpected key {extra[0]!r}" if extra else None


def load_published_checkpoint(
    path_or_file: str | os.PathLike | BinaryIO,
    map_location: str | torch.device = "cpu",
    weights_only: bool = True,
) -> SpectrumVAE:
    """Load the authors' checkpoint (torch pickle dict with 'state_dict') into the paper preset.

    Keys prefixed ``module.`` (saved from ``nn.DataParallel``) are accepted. The model is
    returned in eval mode. ``weights_only=True`` refuses arbitrary pickled objects; pass
    False only for a file you trust that stores other Python objects next to the weights.
    """
    name = _source_name(path_or_file)
    ckpt = torch.load(path_or_file, map_location=map_location, weights_only=weights_only)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        found = sorted(ckpt)[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise InputError(f"{name}: not a published checkpoint, no 'state_dict' (found {found})")
    state = _strip_prefix(dict(ckpt["state_dict"]))
    model = build_model("paper")
    problem = _first_mismatch(model, state)
    if problem is not None:
        raise InputError(f"{name}: does not match the paper network: {problem}")
    model.load_state_dict(state, strict=True)
    return model.eval()
