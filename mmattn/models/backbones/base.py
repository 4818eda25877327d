"""What every mmattn dense-prediction backbone shares (the mmpretrain Swin conventions)."""
import torch
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..utils import load_pretrained


class DenseBackbone(BaseModule):
    """Base of the 4-stage backbones: out_indices, init_cfg, frozen_stages, norm_eval.

    Subclasses set ``family`` (their converter), ``in_channels``, ``out_indices`` (via
    :meth:`parse_out_indices`), ``frozen_stages``, ``norm_eval``, output norms ``norm{i}``, and
    implement :meth:`stem_and_stages`.
    """
    family = None
    num_stages = 4
    min_input_size = 32  # DESIGN: any H, W >= 32 (one pixel per side at stride 32)

    def parse_out_indices(self, out_indices):
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not out_indices or any(not -self.num_stages <= i < self.num_stages for i in out_indices):
            raise ValueError(f'out_indices must name stages in 0..{self.num_stages - 1}, '
                             f'got {out_indices}')
        return sorted({i % self.num_stages for i in out_indices})

    def stem_and_stages(self):
        """(stem module, sequence of stage modules) in forward order."""
        raise NotImplementedError

    def check_input(self, x):
        """Shape checks only: NaN/Inf are not looked for (that would cost a device sync per
        forward); they propagate to the outputs like in any convolutional network."""
        name = type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise TypeError(f'{name} expects a tensor (N, {self.in_channels}, H, W), got '
                            f'{type(x).__name__}')
        if not x.is_floating_point():
            raise TypeError(f'{name} expects a floating-point input, got {x.dtype}')
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'{name} expects an (N, {self.in_channels}, H, W) tensor '
                             f'(in_channels={self.in_channels}), got shape {tuple(x.shape)}')
        min_size = getattr(self, 'min_input_size', DenseBackbone.min_input_size)
        if min(x.shape[2:]) < min_size:  # also used unbound by SlidePVT (an mmdet PVT)
            raise ValueError(f'{name} needs H, W >= {min_size} (min_input_size), '
                             f'got {x.shape[2]}x{x.shape[3]}')

    def init_weights(self):
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            load_pretrained(self, self.family, self.init_cfg['checkpoint'],
                            prefix=self.init_cfg.get('prefix'))
            return
        super().init_weights()
        if self.init_cfg is None:  # the official classification init of every family
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    trunc_normal_(m.weight, std=.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.LayerNorm):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        stem, stages = self.stem_and_stages()
        frozen = [stem] + [stages[i] for i in range(min(self.frozen_stages, len(stages)))]
        frozen += [getattr(self, f'norm{i}') for i in self.out_indices if i < self.frozen_stages]
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode=True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
