"""An offline perceptual loss: distances between normalised features of a frozen 3D ResNet whose weights
the *user* supplies as ``.safetensors``.

MONAI's ``PerceptualLoss`` fetches its networks through torch.hub / torchvision at run time. metavoxel never
downloads anything, so the feature network here is a MONAI ``ResNet`` in the MedicalNet layout (Chen et al.
2019, "Med3D"; ``feed_forward=False``), and its weights come from a file the user names — e.g. MedicalNet
weights converted once to safetensors. Without such a file the perceptual term is simply off.

The distance follows LPIPS (Zhang et al. 2018) without the learned linear heads::

    P(x_hat, x) = mean_l mean_{b,c,voxel} | n(f_l(s(x_hat))) - n(f_l(s(x))) |

where ``s`` z-scores each volume (the MedicalNet input convention), ``f_l`` is the output of ResNet stage
``l`` (layer1..layer4) and ``n`` scales each voxel's feature vector to unit L2 norm over channels.
"""

from __future__ import annotations

from pathlib import Path

import torch

from metavoxel.errors import CheckpointError, InputError

__all__ = ["FeaturePerceptualLoss", "build_feature_network", "read_resnet_weights"]

# Heads of published checkpoints that a feed_forward=False ResNet has no use for.
_IGNORED_PREFIXES = ("conv_seg.", "fc.")


def build_feature_network(network: str) -> torch.nn.Module:
    """A 3D single-channel MONAI ResNet (``feed_forward=False``) with MedicalNet's shortcut/bias layout.

    Args:
        network: ``"resnet10"``, ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``.
    """
    from monai.networks.nets import resnet
    from monai.networks.nets.resnet import get_medicalnet_pretrained_resnet_args

    factories = {"resnet10": resnet.resnet10, "resnet18": resnet.resnet18, "resnet34": resnet.resnet34,
                 "resnet50": resnet.resnet50}
    if network not in factories:
        raise InputError(f"perceptual network {network!r} is unknown; expected one of {sorted(factories)}")
    bias_downsample, shortcut_type = get_medicalnet_pretrained_resnet_args(int(network.removeprefix("resnet")))
    return factories[network](spatial_dims=3, n_input_channels=1, feed_forward=False,
                              shortcut_type=shortcut_type, bias_downsample=bias_downsample)


def read_resnet_weights(path: Path, net: torch.nn.Module, network: str, *, what: str = "perceptual weights",
                        fix: str = "give weights of that network or choose the matching perceptual network",
                        ) -> dict[str, torch.Tensor]:
    """User ``.safetensors`` weights for the MONAI ResNet ``net``, strictly checked (heads are ignored).

    ``network`` names the architecture, ``what`` the weights and ``fix`` the remedy in error messages
    (the perceptual loss and the FID feature networks both load user ResNet weights through here).
    """
    from safetensors.torch import load_file

    if not path.is_file():
        raise InputError(f"{what} {str(path)!r} do not exist; give an existing .safetensors file of a "
                         f"{network} feature network, or leave perceptual weights out (the term is then off)")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises several types for a bad header
        raise CheckpointError(f"{what} {str(path)!r} are not a readable .safetensors file "
                              f"({type(exc).__name__}: {exc}); convert the checkpoint with "
                              "safetensors.torch.save_file") from None
    state = {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel checkpoints
    state = {k: v for k, v in state.items() if not k.startswith(_IGNORED_PREFIXES)}
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise CheckpointError(f"{what} {str(path)!r} do not fit a MONAI {network}: {len(missing)} missing "
                              f"tensors, {len(unexpected)} unexpected (e.g. {example!r}); {fix}")
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{what} {str(path)!r}: tensor {key!r} has shape {tuple(state[key].shape)}, "
                                  f"a MONAI {network} expects {tuple(value.shape)}; {fix}")
    return state


class FeaturePerceptualLoss(torch.nn.Module):
    """LPIPS-style distance between frozen ResNet features of two volumes (see the module docstring).

    Args:
        network: a MONAI ``ResNet`` built by `build_feature_network` with its weights loaded; it is frozen
            and kept in eval mode (BatchNorm uses its running statistics).
    """

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network.eval().requires_grad_(False)

    @classmethod
    def from_file(cls, path: str | Path, network: str = "resnet10") -> FeaturePerceptualLoss:
        """Build the feature network and load the user's weights (strict: every tensor must fit).

        Raises:
            InputError: the file does not exist.
            CheckpointError: the file is unreadable or does not fit the network.
        """
        net = build_feature_network(network)
        net.load_state_dict(read_resnet_weights(Path(path), net, f"{network} (feed_forward=False)"))
        return cls(net)

    def train(self, mode: bool = True) -> FeaturePerceptualLoss:
        super().train(mode)
        self.network.eval()  # frozen: never update BatchNorm statistics
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised features of stages layer1..layer4.

        Args:
            x: (B, C, X, Y, Z) volumes; each channel goes through the network as its own volume.

        Returns:
            four tensors (B * C, F_l, *grid_l), each voxel's feature vector of unit L2 norm.
        """
        b, c = x.shape[:2]
        x = x.reshape(b * c, 1, *x.shape[2:])  # (B*C, 1, X, Y, Z)
        dims = tuple(range(2, x.ndim))
        x = (x - x.mean(dim=dims, keepdim=True)) / (x.std(dim=dims, keepdim=True) + 1e-5)
        net = self.network
        h = net.act(net.bn1(net.conv1(x)))
        if not net.no_max_pool:
            h = net.maxpool(h)
        out = []
        for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
            h = stage(h)
            out.append(h / (h.norm(dim=1, keepdim=True) + 1e-10))
        return out

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Scalar perceptual distance, differentiable in ``x_hat``.

        Args:
            x_hat: (B, C, X, Y, Z) reconstruction.
            x: (B, C, X, Y, Z) target (no gradient needed).
        """
        if x_hat.ndim != 5:
            raise InputError(f"the perceptual loss is 3D: expected (B, C, X, Y, Z) volumes, got shape "
                             f"{tuple(x_hat.shape)}; train 2D VAEs without perceptual weights")
        with torch.no_grad():
            target = self.features(x.float())
        ours = self.features(x_hat.float())
        return torch.stack([(a - t).abs().mean() for a, t in zip(ours, target)]).mean()
