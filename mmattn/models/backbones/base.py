"""What every mmattn dense-prediction backbone shares (the mmpretrain Swin conventions)."""
import copy

import torch
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmattn.converters import load_pretrained


def parse_out_norms(out_norms):
    """The ``out_norms`` argument, checked: True (output norms) or False (raw stage maps)."""
    if not isinstance(out_norms, bool):
        raise TypeError(f'out_norms must be True or False, got {out_norms!r}')
    return out_norms


class DenseBackbone(BaseModule):
    """Base of the 4-stage backbones: out_indices, out_norms, init_cfg, frozen_stages, norm_eval.

    Subclasses set ``family`` (their converter), ``in_channels``, ``out_indices`` (via
    :meth:`parse_out_indices`), ``frozen_stages``, ``norm_eval``, the output norms ``norm{i}``
    (via :meth:`add_out_norms`, applied with :meth:`out_norm`), and implement
    :meth:`stem_and_stages`.

    Class attributes the tools read (one place per family):

    - ``headline_arch`` (str): the ``arch_zoo`` key of the paper's headline variant (the one
      benchmarks and analysis tools build by default).
    - ``test_arch`` (dict): constructor keyword arguments of a tiny variant of the class, fast
      enough to export or compile on a 2-core CPU in seconds.
    """
    family = None
    headline_arch = None
    test_arch = None
    num_stages = 4
    min_input_size = 32  # any H, W >= 32: at least one pixel per side at stride 32
    out_norms = True

    def add_out_norms(self, out_norms, build_norm):
        """Output norms ``norm{i} = build_norm(i)`` of the returned stages ``i`` (0-based).

        An output norm normalises the returned copy of a stage map only (the next stage reads
        the raw map). With ``out_norms=False`` none is built and :meth:`out_norm` returns the
        raw stage maps, those a classification trunk computes (timm's ``features_only``
        habit); a checkpoint's ``norm{i}`` tensors are then skipped by the loader, which logs
        their number (``unused output norms``).
        """
        self.out_norms = parse_out_norms(out_norms)
        if self.out_norms:
            for i in self.out_indices:
                self.add_module(f'norm{i}', build_norm(i))

    def out_norm(self, i, x):
        """The map returned for stage ``i``: ``norm{i}(x)``, or ``x`` without output norms."""
        return getattr(self, f'norm{i}')(x) if self.out_norms else x

    def parse_out_indices(self, out_indices):
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not out_indices or any(not -self.num_stages <= i < self.num_stages for i in out_indices):
            raise ValueError(f'out_indices must name stages in 0..{self.num_stages - 1}, '
                             f'got {out_indices}')
        return sorted({i % self.num_stages for i in out_indices})

    def parse_arch(self, arch, required_keys, optional_keys=(), allow_extra_keys=False,
                   per_stage_keys=()):
        """An ``arch`` argument as a new settings dict.

        A string names an ``arch_zoo`` entry (case-insensitive). A dict must hold
        ``required_keys`` and nothing but ``optional_keys`` (anything more with
        ``allow_extra_keys``); each of its ``per_stage_keys`` must give ``num_stages`` values.
        Family-specific checks of a custom dict are left to the caller.
        """
        name = type(self).__name__
        if isinstance(arch, str):
            if arch.lower() not in self.arch_zoo:
                raise ValueError(f'Unknown {name} arch {arch!r}; choose one of '
                                 f'{sorted(self.arch_zoo)} or pass a dict')
            return copy.deepcopy(self.arch_zoo[arch.lower()])
        required, optional = set(required_keys), set(optional_keys)
        if not isinstance(arch, dict) or not required <= set(arch) or not (
                allow_extra_keys or set(arch) <= required | optional):
            if allow_extra_keys:
                keys = f'keys {sorted(required)}'
            elif optional:
                keys = f'keys {sorted(required)} and optionally {sorted(optional)}'
            else:
                keys = f'exactly the keys {sorted(required)}'
            raise ValueError(f'A custom {name} arch must be a dict with {keys}, got {arch!r}')
        arch = copy.deepcopy(arch)
        for key in per_stage_keys:
            if len(arch[key]) != self.num_stages:
                raise ValueError(f'arch[{key!r}] needs {self.num_stages} values, got {arch[key]}')
        return arch

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
        if min(x.shape[2:]) < self.min_input_size:
            raise ValueError(f'{name} needs H, W >= {self.min_input_size} (min_input_size), '
                             f'got {x.shape[2]}x{x.shape[3]}')
        weight = next(self.parameters(), None)
        if weight is not None and x.dtype != weight.dtype \
                and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(
                f'{name}: input dtype {x.dtype} differs from the weights ({weight.dtype}); pass '
                f'{weight.dtype} inputs or convert the model (model.to({x.dtype})); for reduced '
                "precision on CPU use torch.autocast('cpu', dtype=torch.bfloat16)")
        if self.training and x.shape[0] == 1 and \
                -(-x.shape[2] // 32) * -(-x.shape[3] // 32) == 1:
            stages = getattr(self, 'stages', None)
            if stages is not None and len(stages) and any(
                    isinstance(m, _BatchNorm) and m.training for m in stages[-1].modules()):
                raise ValueError(
                    f'{name} in train mode: one {x.shape[2]}x{x.shape[3]} image leaves a 1x1 map '
                    'and so one value per channel for the BatchNorm layers of the last stage; '
                    'train with >= 2 images per batch or larger inputs, or set norm_eval=True')

    def pretrained_init_cfg(self):
        """The ``type='Pretrained'`` entry of ``init_cfg`` (a dict or a list of dicts), or None."""
        cfgs = self.init_cfg if isinstance(self.init_cfg, (list, tuple)) else [self.init_cfg]
        pretrained = [c for c in cfgs if c is not None and c.get('type') == 'Pretrained']
        if len(pretrained) > 1:
            raise ValueError(f'{type(self).__name__}: init_cfg names {len(pretrained)} '
                             f'Pretrained checkpoints, expected at most one')
        return pretrained[0] if pretrained else None

    def init_weights(self):
        pretrained = self.pretrained_init_cfg()
        if isinstance(self.init_cfg, (list, tuple)):
            # mmengine's list form: the other initialisers first, the checkpoint last (as
            # BaseModule does), the checkpoint read by load_pretrained (key conversion)
            others = [c for c in self.init_cfg if c is not pretrained]
            if others or pretrained is None:
                init_cfg = self.init_cfg
                self.init_cfg = others
                try:
                    super().init_weights()
                finally:
                    self.init_cfg = init_cfg
        elif pretrained is None:
            super().init_weights()
        if pretrained is not None:
            load_pretrained(self, self.family, pretrained['checkpoint'],
                            prefix=pretrained.get('prefix'))
            return
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
        if self.out_norms:
            frozen += [getattr(self, f'norm{i}') for i in self.out_indices
                       if i < self.frozen_stages]
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
