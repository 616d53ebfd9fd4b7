"""The network: one LDM-style U-Net over images and scalar tokens, with bottleneck scalar heads."""

from metavoxel.nn.attention import Attention, SpatialTransformer, check_backend
from metavoxel.nn.scalars import ScalarHead, TokenEmbedding
from metavoxel.nn.unet import JointUNet

__all__ = ["Attention", "JointUNet", "ScalarHead", "SpatialTransformer", "TokenEmbedding", "check_backend"]
