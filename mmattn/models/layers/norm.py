import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (timm's ``LayerNorm2d``; mmcv has none)."""

    def __init__(self, num_channels, eps=1e-6, **kwargs):
        super().__init__(num_channels, eps=eps, **kwargs)

    def forward(self, x):
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                         self.eps)
        # contiguous: mmcv's roi_align reads its input as if it were (scrambled RoI features)
        return x.permute(0, 3, 1, 2).contiguous()
