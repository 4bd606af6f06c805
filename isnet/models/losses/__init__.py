"""Pixel losses: each takes ``(N, K, H, W)`` logits and ``(N, H, W)`` labels and returns one scalar.

:class:`isnet.models.ISNetLoss` applies one of them to every output of the network (stage 2, stage 1, aux) and
weights the terms. :class:`CrossEntropyLoss` is the reference's ISNet loss; the others follow sssegmentation's
``ssseg/modules/models/{samplers/ohempixelsampler.py, losses/lovaszloss.py, losses/diceloss.py}``.
"""

from isnet.models.losses.cross_entropy import CrossEntropyLoss
from isnet.models.losses.dice import DiceLoss
from isnet.models.losses.lovasz import LovaszSoftmaxLoss, lovasz_grad
from isnet.models.losses.ohem import OHEMCrossEntropyLoss

__all__ = ["CrossEntropyLoss", "DiceLoss", "LovaszSoftmaxLoss", "OHEMCrossEntropyLoss", "lovasz_grad"]
