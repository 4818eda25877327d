"""What every mmattn dense-prediction backbone shares (the mmpretrain Swin conventions)."""
import copy

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule, ModuleList
from mmengine.model.weight_init import trunc_normal_
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmattn.converters import load_pretrained


def parse_out_norms(out_norms):
    """The ``out_norms`` argument, checked: True (output norms) or False (raw stage maps)."""
    if not isinstance(out_norms, bool):
        raise TypeError(f'out_norms must be True or False, got {out_norms!r}')
    return out_norms


ARCH_KEYS = ('embed_dims', 'depths', 'num_heads', 'mlp_ratios')  # every arch_zoo entry's


def normalize_arch(arch, num_stages=4):
    """A custom arch dict in the common schema: an int ``embed_dims`` E becomes the doubling
    widths ``[E, 2E, 4E, ...]`` and a scalar ``mlp_ratio`` the per-stage ``mlp_ratios`` (the
    older spellings, still accepted)."""
    arch = copy.deepcopy(arch)
    if isinstance(arch.get('embed_dims'), int):
        arch['embed_dims'] = [arch['embed_dims'] * 2**i for i in range(num_stages)]
    if 'mlp_ratio' in arch and 'mlp_ratios' not in arch:
        arch['mlp_ratios'] = [arch.pop('mlp_ratio')] * num_stages
    return arch


class Stage(BaseModule):
    """The modules of one stage under their state-dict names (``blocks`` and named parts such
    as ``downsample`` or ``patch_embed``, in the given order); the backbone's
    :meth:`DenseBackbone.forward_stage` runs them."""

    def __init__(self, **parts):
        super().__init__()
        for name, part in parts.items():
            setattr(self, name, ModuleList(part) if name == 'blocks' else part)


class DenseBackbone(BaseModule):
    """Base of the 4-stage dense-prediction backbones (the mmpretrain Swin conventions).

    It owns what every family shares: the common constructor arguments (``in_channels``,
    ``out_indices``, ``out_norms``, ``frozen_stages``, ``norm_eval``, ``with_cp``,
    ``init_cfg``), the ``arch`` argument (:meth:`parse_arch`, schema :data:`ARCH_KEYS`), the
    stochastic-depth schedule (:meth:`drop_path_rates`), the 0-based output norms ``norm{i}``
    (:meth:`add_out_norms`), the forward skeleton (input checks, padding, stem, stage loop with
    activation checkpointing per block, output norms, early exit after the last returned
    stage, crop), weight initialisation and loading, ``frozen_stages`` and ``norm_eval``.

    A family implements :meth:`forward_stem`, :meth:`forward_stage` and
    :meth:`stem_and_stages` (and :meth:`_parse_arch` for its arch keys and checks; the parsed
    arch is ``self.arch_settings``, its widths ``self.embed_dims``), and sets these class
    attributes:

    - ``arch_zoo`` (dict): named variants, each with the keys :data:`ARCH_KEYS` as per-stage
      lists plus family keys.
    - ``family`` (str): its converter in ``mmattn.converters`` (None: the file holds mmattn keys).
    - ``size_divisor`` (int, optional): pad the input at the bottom/right to a multiple of it
      and crop each output to ``ceil(H / stride)`` (what mmdet's ``pad_size_divisor`` does);
      None (default): the input runs as it is.
    - ``channels_last`` (bool): the stage maps are NHWC (converted to NCHW after the output
      norm). Default: False.

    Class attributes the tools read (one place per family):

    - ``headline_arch`` (str): the ``arch_zoo`` key of the paper's headline variant (the one
      benchmarks and analysis tools build by default).
    - ``test_arch`` (dict): constructor keyword arguments of a tiny variant of the class, fast
      enough to export or compile on a 2-core CPU in seconds.
    """
    arch_zoo = {}
    docs_page = None  # its docs/ page, with a '## <ClassName> arguments' table
    family = None
    headline_arch = None
    test_arch = None
    num_stages = 4
    min_input_size = 32  # any H, W >= 32: at least one pixel per side at stride 32
    size_divisor = None
    channels_last = False
    out_norms = True

    def __init__(self, arch, in_channels=3, out_indices=(0, 1, 2, 3), out_norms=True,
                 frozen_stages=-1, norm_eval=False, with_cp=False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self._parse_arch(arch)
        self.embed_dims = list(self.arch_settings['embed_dims'])
        if isinstance(frozen_stages, bool) or not isinstance(frozen_stages, int) \
                or not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(f'frozen_stages must be an int in -1..{self.num_stages}, '
                             f'got {frozen_stages!r}')
        self.in_channels = in_channels
        self.out_indices = self.parse_out_indices(out_indices)
        self.out_norms = parse_out_norms(out_norms)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp

    def drop_path_rates(self, drop_path_rate, depths):
        """Per-stage lists of the blocks' stochastic-depth rates: linear from 0 to
        ``drop_path_rate`` over all blocks (every family's official rule)."""
        rates = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        return [rates[sum(depths[:i]):sum(depths[:i + 1])] for i in range(len(depths))]

    def add_out_norms(self, build_norm):
        """Output norms ``norm{i} = build_norm(i)`` of the returned stages ``i`` (0-based).

        An output norm normalises the returned copy of a stage map only (the next stage reads
        the raw map). With ``out_norms=False`` none is built and :meth:`out_norm` returns the
        raw stage maps, those a classification trunk computes (timm's ``features_only``
        habit); a checkpoint's ``norm{i}`` tensors are then skipped by the loader, which logs
        their number (``unused output norms``).
        """
        if self.out_norms:
            for i in self.out_indices:
                self.add_module(f'norm{i}', build_norm(i))

    def out_norm_module(self, i):
        """The output norm of stage ``i``, or None."""
        return getattr(self, f'norm{i}') if self.out_norms else None

    def out_norm(self, i, x):
        """The map returned for stage ``i``: ``norm{i}(x)``, or ``x`` without output norms."""
        norm = self.out_norm_module(i)
        return x if norm is None else norm(x)

    def parse_out_indices(self, out_indices):
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not out_indices or any(not -self.num_stages <= i < self.num_stages for i in out_indices):
            raise ValueError(f'out_indices must name stages in 0..{self.num_stages - 1}, '
                             f'got {out_indices}')
        return sorted({i % self.num_stages for i in out_indices})

    def parse_arch(self, arch, required_keys=ARCH_KEYS, optional_keys=(), defaults=None,
                   allow_extra_keys=False):
        """An ``arch`` argument as a new settings dict in the common schema.

        A string names an ``arch_zoo`` entry (case-insensitive). A dict is first normalised
        (:func:`normalize_arch`: int ``embed_dims``, scalar ``mlp_ratio``), then must hold
        ``required_keys`` and nothing but ``optional_keys`` (anything more with
        ``allow_extra_keys``); ``defaults`` fill the optional keys it omits, and each of
        :data:`ARCH_KEYS` must give ``num_stages`` values. Family-specific checks of a custom
        dict are left to the caller.
        """
        name = type(self).__name__
        if isinstance(arch, str):
            if arch.lower() not in self.arch_zoo:
                raise ValueError(f'Unknown {name} arch {arch!r}; choose one of '
                                 f'{sorted(self.arch_zoo)} or pass a dict')
            return copy.deepcopy(self.arch_zoo[arch.lower()])
        required, optional = set(required_keys), set(optional_keys)
        if isinstance(arch, dict):
            arch = normalize_arch(arch, self.num_stages)
        if not isinstance(arch, dict) or not required <= set(arch) or not (
                allow_extra_keys or set(arch) <= required | optional):
            if allow_extra_keys:
                keys = f'keys {sorted(required)}'
            elif optional:
                keys = f'keys {sorted(required)} and optionally {sorted(optional)}'
            else:
                keys = f'exactly the keys {sorted(required)}'
            raise ValueError(f'A custom {name} arch must be a dict with {keys}, got {arch!r}')
        arch = dict(copy.deepcopy(defaults or {}), **arch)
        for key in ARCH_KEYS:
            if key in arch and len(arch[key]) != self.num_stages:
                raise ValueError(f'arch[{key!r}] needs {self.num_stages} values, got {arch[key]}')
        return arch

    def _parse_arch(self, arch):
        """The family's ``arch`` parsing: :meth:`parse_arch` with its keys and checks."""
        return self.parse_arch(arch)

    def check_widths(self, settings, doubling=False):
        """A custom arch's widths: divisible by their stage's ``num_heads``, and, for families
        whose downsamplers double the width (C -> 2C), doubling from stage to stage."""
        widths = settings['embed_dims']
        if doubling and any(b != 2 * a for a, b in zip(widths, widths[1:])):
            raise ValueError(f"arch['embed_dims'] must double from stage to stage "
                             f'({type(self).__name__} downsamples C -> 2C), got {widths}')
        for i, (width, heads) in enumerate(zip(widths, settings['num_heads'])):
            if width % heads:
                raise ValueError(f'stage {i}: width {width} is not divisible by '
                                 f'num_heads={heads}')

    def stem_and_stages(self):
        """(stem module or None, sequence of stage modules) in forward order, for freezing."""
        raise NotImplementedError

    def forward_stem(self, x):
        """The stem on the (padded) input; returns the first stage's input state."""
        raise NotImplementedError

    def forward_stage(self, i, state):
        """Stage ``i`` on its input state; returns (stage map, next stage's input state). Each
        block runs through :meth:`run_block`."""
        raise NotImplementedError

    def run_block(self, block, x, *args):
        """``block(x, *args)``, under activation checkpointing with ``with_cp`` (when gradients
        flow through ``x``)."""
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(block, x, *args, use_reentrant=False)
        return block(x, *args)

    def run_blocks(self, blocks, x, *args):
        for block in blocks:
            x = self.run_block(block, x, *args)
        return x

    def forward(self, x):
        """NCHW maps of the ``out_indices`` stages (strides 4, 8, 16, 32), contiguous."""
        self.check_input(x)
        return self.forward_stages(x)

    def forward_stages(self, x):
        height, width = x.shape[2:]
        divisor = self.size_divisor
        if divisor:
            # No branch on the size (it would be frozen into an exported / compiled graph) and
            # no negative operands (ONNX's integer Div / Mod do not floor).
            x = F.pad(x, (0, (divisor - width % divisor) % divisor,
                          0, (divisor - height % divisor) % divisor))
        state = self.forward_stem(x)
        outs = []
        for i in range(self.num_stages):
            feat, state = self.forward_stage(i, state)
            if i in self.out_indices:
                out = self.out_norm(i, feat)
                if self.channels_last:
                    out = out.permute(0, 3, 1, 2)
                if divisor:
                    stride = 2**(i + 2)
                    out = out[:, :, :(height + stride - 1) // stride,
                              :(width + stride - 1) // stride]
                outs.append(out.contiguous())  # mmcv's CPU roi_align misreads strided input
            if i == self.out_indices[-1]:
                break  # later stages feed nothing
        return tuple(outs)

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

    def pretrained_load_options(self):
        """Extra keyword arguments of ``load_pretrained`` for a ``Pretrained`` ``init_cfg``
        (``ignore``: a regex of model keys the file does not give, which keep the official
        init; ``convert``: a state-dict conversion). Empty by default: the family's
        converter, every key strict."""
        return {}

    def official_init(self):
        """The official classification init: trunc-normal Linear (std .02, zero bias),
        LayerNorm 1 / 0; families add theirs."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def init_conv_fan_out(self):
        """Conv2d weights ~ N(0, 2 / fan_out), fan_out = k * k * out / groups, zero biases
        (the official init of Dual-ViT and PVT)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0, (2. / fan_out)**0.5)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _init_with(self, init_cfg):
        """mmengine's init (children's own ``init_weights`` included) under ``init_cfg``."""
        saved, self.init_cfg = self.init_cfg, init_cfg
        try:
            super().init_weights()
        finally:
            self.init_cfg = saved

    def init_weights(self):
        pretrained = self.pretrained_init_cfg()
        if isinstance(self.init_cfg, (list, tuple)):
            # mmengine's list form: the other initialisers first, the checkpoint last (as
            # BaseModule does), the checkpoint read by load_pretrained (key conversion)
            others = [c for c in self.init_cfg if c is not pretrained]
            if others or pretrained is None:
                self._init_with(others)
        elif pretrained is None:
            super().init_weights()
        if pretrained is None:
            if self.init_cfg is None:
                self.official_init()
            return
        options = self.pretrained_load_options()
        if options.get('ignore'):  # the keys the file does not give keep the official init
            self._init_with(None)
            self.official_init()
        load_pretrained(self, self.family, pretrained['checkpoint'],
                        prefix=pretrained.get('prefix'), **options)

    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        stem, stages = self.stem_and_stages()
        frozen = [stem] + [stages[i] for i in range(min(self.frozen_stages, len(stages)))]
        frozen += [self.out_norm_module(i) for i in self.out_indices if i < self.frozen_stages]
        for module in frozen:
            if module is None:
                continue
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
