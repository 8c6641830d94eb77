"""Tests for the beta-VAE loss and KL warm-up, on hand-computed cases."""

import math

import pytest
import torch

from specray.model import kl_per_node, kl_weight, vae_loss

LN2 = math.log(2.0)


def _case():
    """(2, 1, 3) reconstruction case and (2, 2) latent case with hand-computed values."""
    recon = torch.tensor([[[1.0, 2.0, 3.0]], [[0.0, 0.0, 0.0]]])
    target = torch.tensor([[[1.0, 0.0, 5.0]], [[1.0, 1.0, 1.0]]])
    mask = torch.tensor([[[1.0, 1.0, 0.0]], [[1.0, 0.0, 1.0]]])
    # |recon - target| = [0, 2, 2], [1, 1, 1]; times mask = [0, 2, 0], [1, 0, 1]; sum = 4.
    mu = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    logvar = torch.tensor([[0.0, 0.0], [LN2, 0.0]])
    # KL elements -0.5 (1 + lv - mu^2 - e^lv): [0, 0.5], [2.5 - 0.5 ln2, 0]; sum = 3 - 0.5 ln2.
    return recon, target, mask, mu, logvar


def test_mean_normalisation_by_hand():
    terms = vae_loss(*_case(), kl_weight=0.3)
    kl = (3 - 0.5 * LN2) / 4
    assert terms.recon.item() == pytest.approx(4 / 6, abs=1e-7)  # all 6 pixels in denominator
    assert terms.kl.item() == pytest.approx(kl, abs=1e-7)
    assert terms.total.item() == pytest.approx(4 / 6 + 0.3 * kl, abs=1e-7)


def test_sum_normalisation_by_hand():
    terms = vae_loss(*_case(), kl_weight=0.5, normalisation="sum")
    kl = (3 - 0.5 * LN2) / 2
    assert terms.recon.item() == pytest.approx(4 / 2, abs=1e-7)
    assert terms.kl.item() == pytest.approx(kl, abs=1e-7)
    assert terms.total.item() == pytest.approx(2 + 0.5 * kl, abs=1e-6)


def test_kl_per_node_by_hand():
    _, _, _, mu, logvar = _case()
    per_node = kl_per_node(mu, logvar)
    expected = torch.tensor([(2.5 - 0.5 * LN2) / 2, 0.25])
    torch.testing.assert_close(per_node, expected)
    assert kl_per_node(torch.zeros(4, 3), torch.zeros(4, 3)).abs().max() == 0


def test_masked_pixel_changes_nothing():
    recon, target, mask, mu, logvar = _case()
    base = vae_loss(recon, target, mask, mu, logvar, kl_weight=0.3)
    target2 = target.clone()
    target2[0, 0, 2] = 1e6  # masked
    recon2 = recon.clone().requires_grad_(True)
    changed = vae_loss(recon2, target2, mask, mu, logvar, kl_weight=0.3)
    assert torch.equal(changed.total, base.total)
    changed.total.backward()
    assert recon2.grad[0, 0, 2] == 0 and recon2.grad[1, 0, 1] == 0
    assert recon2.grad[0, 0, 1] != 0


def test_bool_and_broadcast_masks():
    recon, target, mask, mu, logvar = _case()
    base = vae_loss(recon, target, mask, mu, logvar, kl_weight=0.3)
    as_bool = vae_loss(recon, target, mask.bool(), mu, logvar, kl_weight=0.3)
    assert torch.equal(as_bool.total, base.total)
    shared = torch.tensor([1.0, 0.0, 1.0])  # one mask for the whole batch
    # |diff| * [1, 0, 1] = [0, 0, 2], [1, 0, 1]; sum = 4 again.
    terms = vae_loss(recon, target, shared, mu, logvar, kl_weight=0.0)
    assert terms.recon.item() == pytest.approx(4 / 6, abs=1e-7)
    assert terms.total.item() == pytest.approx(4 / 6, abs=1e-7)


def test_sum_versus_mean_relation():
    torch.manual_seed(0)
    b, length, d = 4, 50, 7
    recon, target = torch.randn(b, 1, length), torch.randn(b, 1, length)
    mask = (torch.rand(b, 1, length) > 0.3).float()
    mu, logvar = torch.randn(b, d), torch.randn(b, d)
    mean = vae_loss(recon, target, mask, mu, logvar, kl_weight=0.3, normalisation="mean")
    summ = vae_loss(recon, target, mask, mu, logvar, kl_weight=0.3, normalisation="sum")
    torch.testing.assert_close(summ.recon, length * mean.recon)
    torch.testing.assert_close(summ.kl, d * mean.kl)
    torch.testing.assert_close(kl_per_node(mu, logvar).sum(), summ.kl)
    torch.testing.assert_close(kl_per_node(mu, logvar).mean(), mean.kl)


def test_bad_inputs_raise():
    recon, target, mask, mu, logvar = _case()
    with pytest.raises(ValueError, match="normalisation"):
        vae_loss(recon, target, mask, mu, logvar, kl_weight=0.3, normalisation="median")
    with pytest.raises(ValueError, match="target"):
        vae_loss(recon, target[:, :, :2], mask, mu, logvar, kl_weight=0.3)
    with pytest.raises(ValueError, match="mask"):
        vae_loss(recon, target, mask[:, :, :2], mu, logvar, kl_weight=0.3)
    with pytest.raises(ValueError, match="mu"):
        vae_loss(recon, target, mask, mu[:1], logvar[:1], kl_weight=0.3)


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 0.0), (4999, 0.0), (5000, 0.0), (12500, 0.15), (20000, 0.3), (30000, 0.3)],
)
def test_kl_weight_schedule(step, expected):
    assert kl_weight(step) == pytest.approx(expected, abs=1e-12)


def test_kl_weight_custom_and_degenerate():
    assert kl_weight(15, warmup_start=10, warmup_end=20, beta=1.0) == pytest.approx(0.5)
    assert kl_weight(9, warmup_start=10, warmup_end=10, beta=2.0) == 0.0
    assert kl_weight(10, warmup_start=10, warmup_end=10, beta=2.0) == 2.0
    with pytest.raises(ValueError, match="warmup_end"):
        kl_weight(0, warmup_start=10, warmup_end=5)


def test_sample_weights_scale_each_spectrum():
    """Weights (2, 0) count the first spectrum twice and ignore the second."""
    torch.manual_seed(0)
    recon, target = torch.randn(2, 1, 8), torch.randn(2, 1, 8)
    mask = torch.ones(2, 1, 8)
    mu, logvar = torch.randn(2, 3), torch.randn(2, 3)
    weighted = vae_loss(
        recon, target, mask, mu, logvar, 0.5, sample_weights=torch.tensor([2.0, 0.0])
    )
    first = vae_loss(recon[:1], target[:1], mask[:1], mu[:1], logvar[:1], 0.5)
    # mean normalisation divides by B*L = 16 (weighted) versus 8 (one spectrum): same value.
    torch.testing.assert_close(weighted.recon, first.recon)
    torch.testing.assert_close(weighted.kl, first.kl)
    unweighted = vae_loss(recon, target, mask, mu, logvar, 0.5, sample_weights=torch.ones(2))
    torch.testing.assert_close(
        unweighted.total, vae_loss(recon, target, mask, mu, logvar, 0.5).total
    )
