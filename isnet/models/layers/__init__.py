"""Building blocks shared by the ISNet head and the auxiliary head."""

from isnet.models.layers.attention import SelfAttentionBlock
from isnet.models.layers.conv import ClassifierConv2d, build_activation, conv_bn_act

__all__ = ["ClassifierConv2d", "SelfAttentionBlock", "build_activation", "conv_bn_act"]
