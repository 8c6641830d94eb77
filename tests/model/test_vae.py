"""Tests for the spectrum VAE architecture, presets and published-checkpoint loading."""

import io
import json

import pytest
import torch
from torch.nn import functional as F

from specray.model import build_model, load_published_checkpoint, preset_names
from specray.model.vae import SingleChannelConv1d
from specray.spectra.grid import named_grid

PAPER_L = 327_680

# (in, out, kernel) per layer, written out from method.md section 3.
PAPER_ENCODER = [
    (1, 16, 7), (16, 16, 5), (16, 16, 5),
    (16, 32, 3), (32, 32, 3), (32, 32, 3),
    (32, 64, 3), (64, 64, 3), (64, 64, 3),
    (64, 128, 3), (128, 128, 3), (128, 128, 3),
    (128, 256, 3), (256, 512, 3), (512, 512, 3),
]  # fmt: skip
# Decoder in execution order: deconv15 (k3, s1) then deconv14 .. deconv1 (k4, s2).
PAPER_DECODER = [(512, 512, 3)] + [
    (512, 256, 4), (256, 128, 4), (128, 128, 4), (128, 128, 4),
    (128, 64, 4), (64, 64, 4), (64, 64, 4), (64, 32, 4),
    (32, 32, 4), (32, 32, 4), (32, 16, 4), (16, 16, 4),
    (16, 16, 4), (16, 1, 4),
]  # fmt: skip


def _paper_param_count_by_hand() -> int:
    conv = sum(cin * cout * k + cout for cin, cout, k in PAPER_ENCODER + PAPER_DECODER)
    flat, latent = 512 * 20, 128
    fc11_fc12 = 2 * (flat * latent + latent)
    fc2 = latent * flat + flat
    predict0 = 1 * 1 * 3 + 1
    return conv + fc11_fc12 + fc2 + predict0


@pytest.fixture(scope="module")
def paper():
    torch.manual_seed(0)
    return build_model("paper").eval()


def test_paper_parameter_count_matches_hand_formula(paper):
    expected = _paper_param_count_by_hand()
    assert expected == 7_046_997  # "about 7.05 M" in the paper
    assert sum(p.numel() for p in paper.parameters()) == expected


def test_paper_module_names_and_order(paper):
    names = [name for name, _ in paper.named_children()]
    expected = (
        [f"conv{i}" for i in range(1, 16)]
        + ["fc11", "fc12", "fc2"]
        + [f"deconv{i}" for i in range(15, 0, -1)]
        + ["predict0"]
    )
    assert names == expected
    keys = set(paper.state_dict())
    assert {"conv1.0.weight", "conv15.0.bias", "deconv15.0.weight", "deconv1.0.bias"} <= keys
    assert {"fc11.weight", "fc12.bias", "fc2.weight", "predict0.weight", "predict0.bias"} <= keys
    assert len(keys) == 2 * (15 + 3 + 15 + 1)


def test_paper_layer_shapes(paper):
    sd = paper.state_dict()
    for i, (cin, cout, k) in enumerate(PAPER_ENCODER, start=1):
        assert tuple(sd[f"conv{i}.0.weight"].shape) == (cout, cin, k)
        conv = getattr(paper, f"conv{i}")[0]
        assert conv.stride == ((1,) if i == 15 else (2,))
        assert conv.padding == ((k - 1) // 2,)
        assert getattr(paper, f"conv{i}")[1].negative_slope == 0.1
    for i, (cin, cout, k) in zip(range(15, 0, -1), PAPER_DECODER, strict=True):
        # ConvTranspose1d stores weights as (in, out, k).
        assert tuple(sd[f"deconv{i}.0.weight"].shape) == (cin, cout, k)
        deconv = getattr(paper, f"deconv{i}")[0]
        assert (deconv.stride, deconv.padding) == (((1,), (1,)) if i == 15 else ((2,), (1,)))
        assert getattr(paper, f"deconv{i}")[1].negative_slope == 0.1
    assert tuple(sd["fc11.weight"].shape) == (128, 10240)
    assert tuple(sd["fc12.weight"].shape) == (128, 10240)
    assert tuple(sd["fc2.weight"].shape) == (10240, 128)
    assert tuple(sd["predict0.weight"].shape) == (1, 1, 3)


def test_paper_forward_full_length(paper):
    seen = {}

    def record(module, inputs, output) -> None:
        seen["enc"] = tuple(output.shape)

    hook = paper.conv15.register_forward_hook(record)
    x = torch.randn(1, 1, PAPER_L)
    try:
        with torch.no_grad():
            recon, mu, logvar = paper(x)
            mu2, logvar2 = paper.encode(x)
            decoded = paper.decode(mu2)
    finally:
        hook.remove()
    assert seen["enc"] == (1, 512, 20)
    assert recon.shape == (1, 1, PAPER_L)
    assert mu.shape == logvar.shape == (1, 128)
    torch.testing.assert_close(mu, mu2, rtol=0, atol=0)
    torch.testing.assert_close(logvar, logvar2, rtol=0, atol=0)
    torch.testing.assert_close(recon, decoded, rtol=0, atol=0)  # eval mode uses mu


def test_presets():
    assert set(preset_names()) >= {"paper", "demo"}
    with pytest.raises(ValueError, match="nope"):
        build_model("nope")
    with pytest.raises(TypeError, match="widht"):
        build_model("demo", widht=3)


def test_demo_preset_shapes():
    model = build_model("demo")
    assert model.config()["input_length"] == 16_384
    assert model.config()["latent_dim"] == 32
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    recon, mu, logvar = model(torch.randn(2, 1, 16_384))
    assert recon.shape == (2, 1, 16_384)
    assert mu.shape == logvar.shape == (2, 32)


def test_override_other_length_and_latent():
    model = build_model(
        "demo",
        input_length=4096,
        latent_dim=6,
        channels=[4, 8, 16, 16],
        kernels=[7, 5, 3, 3],
        strides=[2, 2, 2, 1],
    )
    assert model.arch.flat_size == 16 * 512
    assert tuple(model.fc11.weight.shape) == (6, 16 * 512)
    assert [n for n, _ in model.named_children()] == [
        "conv1", "conv2", "conv3", "conv4", "fc11", "fc12", "fc2",
        "deconv4", "deconv3", "deconv2", "deconv1", "predict0",
    ]  # fmt: skip
    assert tuple(model.deconv4[0].weight.shape) == (16, 16, 3)  # mirrors stride-1 conv4
    assert tuple(model.deconv1[0].weight.shape) == (4, 1, 4)
    recon, mu, logvar = model(torch.randn(3, 1, 4096))
    assert recon.shape == (3, 1, 4096)
    assert mu.shape == logvar.shape == (3, 6)
    assert model.decode(torch.zeros(5, 6)).shape == (5, 1, 4096)


def test_any_length_is_padded_to_the_stride_multiple_and_cropped_back():
    # The paper preset on a linear grid of 4001 pixels (padded to 4096 by the store):
    # the network pads to 16,384 = 2**14 internally, one bottleneck sample.
    length = named_grid("linear:4000:4400:0.1").length
    assert length == 4096
    model = build_model("paper", input_length=length)
    assert model.arch.padded_length == 16_384 and model.arch.bottleneck_length == 1
    x = torch.randn(2, 1, length)
    model.eval()
    recon, mu, _ = model(x)
    assert recon.shape == (2, 1, length) and mu.shape == (2, 128)
    # Cropping is exact: the first pixels equal the decoder run on explicitly padded input.
    full = build_model("paper", input_length=16_384)
    full.load_state_dict(model.state_dict())
    full.eval()
    with torch.no_grad():
        expected, expected_mu, _ = full(F.pad(x, (0, 16_384 - length)))
    torch.testing.assert_close(expected[..., :length], recon)
    torch.testing.assert_close(expected_mu, mu)
    # The published network needs no padding; a length one multiple up pads nothing either.
    assert build_model("paper").arch.padded_length == 327_680
    assert build_model("demo", input_length=16_384 + 1024).arch.bottleneck_length == 17
    assert build_model("demo", input_length=16_384 + 512).arch.padded_length == 17 * 1024
    with pytest.raises(ValueError, match="input_length must be positive"):
        build_model("demo", input_length=0)


def test_bad_architecture_raises():
    with pytest.raises(ValueError, match="one entry per encoder layer"):
        build_model("demo", channels=[4, 8])
    with pytest.raises(ValueError, match="odd"):
        build_model("demo", kernels=[4] * 11)
    with pytest.raises(ValueError, match="strides"):
        build_model("demo", strides=[3] * 11)


def test_wrong_input_shape_raises():
    model = build_model("demo")
    with pytest.raises(ValueError, match="16384"):
        model.encode(torch.zeros(2, 1, 8192))


def test_config_rebuilds_same_network():
    torch.manual_seed(1)
    model = build_model("demo", latent_dim=5).eval()
    cfg = model.config()
    assert json.loads(json.dumps(cfg)) == cfg  # plain, serialisable
    assert cfg["latent_dim"] == 5 and cfg["channels"] == list(model.arch.channels)
    clone = build_model(**cfg).eval()
    clone.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 1, 16_384)
    with torch.no_grad():
        torch.testing.assert_close(clone(x)[0], model(x)[0], rtol=0, atol=0)
    assert build_model(**build_model("paper").config()).config() == build_model("paper").config()


def test_reparameterisation_in_training_mode():
    model = build_model("demo").train()
    mu = torch.tensor([[0.0, 1.0, -2.0]])
    logvar = torch.tensor([[0.0, 2.0, -1.0]])
    torch.manual_seed(3)
    z = model.reparameterise(mu, logvar)
    torch.manual_seed(3)
    eps = torch.randn_like(mu)
    torch.testing.assert_close(z, mu + eps * torch.exp(logvar / 2))
    x = torch.randn(2, 1, 16_384)
    with torch.no_grad():
        a, _, _ = model(x)
        b, _, _ = model(x)
        model.eval()
        c, _, _ = model(x)
        d, _, _ = model(x)
    assert not torch.equal(a, b)  # sampled
    assert torch.equal(c, d)  # eval mode uses mu


def test_all_parameters_receive_gradients():
    model = build_model("demo").train()
    recon, mu, logvar = model(torch.randn(2, 1, 16_384))
    (recon.abs().mean() + (mu**2 + logvar.exp()).mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_single_channel_conv_matches_plain_conv():
    torch.manual_seed(4)
    conv = SingleChannelConv1d(3)
    x = torch.randn(5, 1, 37, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out = conv(x)
    ref = F.conv1d(x_ref, conv.weight, conv.bias, padding=1)
    torch.testing.assert_close(out, ref)
    grad_out = torch.randn_like(out)
    gx, gw, gb = torch.autograd.grad(out, (x, conv.weight, conv.bias), grad_out)
    rx, rw, rb = torch.autograd.grad(ref, (x_ref, conv.weight, conv.bias), grad_out)
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gw, rw)
    torch.testing.assert_close(gb, rb)


def _save(obj, path):
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("prefix", ["", "module."])
def test_published_checkpoint_roundtrip(paper, tmp_path, prefix):
    state = {prefix + k: v.clone() for k, v in paper.state_dict().items()}
    path = _save({"state_dict": state, "epoch": 182, "iteration": 1_500_000}, tmp_path / "m.pth")
    loaded = load_published_checkpoint(path)
    assert not loaded.training
    for key, value in paper.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.randn(1, 1, PAPER_L)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], paper(x)[0], rtol=0, atol=0)


def test_published_checkpoint_from_file_object(paper):
    buffer = io.BytesIO()
    torch.save({"state_dict": paper.state_dict()}, buffer)
    buffer.seek(0)
    loaded = load_published_checkpoint(buffer)
    assert torch.equal(loaded.fc2.weight, paper.fc2.weight)


def test_published_checkpoint_without_state_dict(paper, tmp_path):
    path = _save({"model": paper.state_dict()}, tmp_path / "bare.pth")
    with pytest.raises(ValueError, match=r"bare\.pth.*state_dict"):
        load_published_checkpoint(path)


def test_published_checkpoint_shape_mismatch(tmp_path):
    other = build_model("paper", latent_dim=64)
    path = _save({"state_dict": other.state_dict()}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match=r"wrong\.pth.*'fc11\.weight'.*\(64, 10240\)"):
        load_published_checkpoint(path)


def test_published_checkpoint_missing_and_extra_keys(paper, tmp_path):
    state = dict(paper.state_dict())
    del state["predict0.bias"]
    path = _save({"state_dict": state}, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing\.pth.*missing key 'predict0\.bias'"):
        load_published_checkpoint(path)
    state = dict(paper.state_dict(), extra=torch.zeros(1))
    path = _save({"state_dict": state}, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"extra\.pth.*unexpected key 'extra'"):
        load_published_checkpoint(path)


@pytest.mark.parametrize("preset", ["demo", "paper"])
def test_a_fresh_network_propagates_signal_both_ways(preset):
    """With PyTorch's default init the stack shrinks unit-variance input to ~1e-3 at mu and
    at the output, and training stalls on the mean spectrum; the He init keeps order 1."""
    torch.manual_seed(0)
    model = build_model(preset)
    x = torch.randn(2, 1, model.arch.input_length)
    with torch.no_grad():
        recon, mu, _ = model.eval()(x)
    assert 0.1 < float(mu.std()) < 10
    assert 0.1 < float(recon.std()) < 10
