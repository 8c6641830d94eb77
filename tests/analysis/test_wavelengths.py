"""What each node reads: the decoder's sensitivity against analytic Jacobians."""

import numpy as np
import pytest
import torch

from specray.analysis.wavelengths import decoder_sensitivity, summarise


class LinearDecoder(torch.nn.Module):
    """decode(z) = W z + b, so d decode / d z_j = W[:, j] exactly."""

    def __init__(self, weight: np.ndarray):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.as_tensor(weight, dtype=torch.float32))

    def decode(self, z):
        return (z @ self.weight.T + 1.0)[:, None, :]


class SineDecoder(LinearDecoder):
    """decode(z) = sin(W z): d decode / d z_j = cos(W z) W[:, j]."""

    def decode(self, z):
        return torch.sin(z @ self.weight.T)[:, None, :]


def test_a_linear_decoder_gives_its_weights_times_the_node_spread():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(50, 4))
    mu = rng.normal(size=(30, 4))
    scale = np.array([0.5, 2.0])
    got = decoder_sensitivity(LinearDecoder(weight), mu, [1, 3], scale)
    expected = 30 * np.abs(weight[:, [1, 3]].T) * scale[:, None]
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_a_nonlinear_decoder_gives_the_mean_absolute_derivative():
    rng = np.random.default_rng(1)
    weight = rng.normal(0, 0.5, size=(40, 3))
    mu = rng.normal(size=(25, 3))
    scale = np.array([1.0])
    got = decoder_sensitivity(SineDecoder(weight), mu, [2], scale)[0]
    expected = np.abs(np.cos(mu @ weight.T) * weight[:, 2]).sum(axis=0)
    np.testing.assert_allclose(got, expected, rtol=5e-3, atol=1e-3)


def test_summary_finds_the_line_a_node_reads():
    wavelength = np.linspace(6400.0, 6700.0, 3001)
    bump = np.exp(-0.5 * ((wavelength - 6562.79) / 0.5) ** 2)
    flat = np.full_like(wavelength, 0.01)
    record = summarise(wavelength, np.stack([bump, flat]), [3, 7])
    alpha = record["nodes"]["3"]
    assert alpha["share_near_lines"]["H-alpha"] == pytest.approx(1.0, abs=1e-6)
    assert abs(alpha["peak_wavelengths"][0] - 6562.79) < 0.1
    assert record["nodes"]["7"]["share_near_lines"]["H-alpha"] == pytest.approx(
        6 / 300, abs=1 / 3001
    )  # 6 A of 300
    assert set(alpha["share_near_lines"]) == {"H-alpha"}  # only lines on the grid
