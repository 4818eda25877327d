"""Released Slide-Swin checkpoints (LeapLabTHU/Slide-Transformer ``SlideSwinTransformer``) ->
mmattn's ``SlideSwin``.

Renames: ``layers.`` -> ``stages.``, ``patch_embed.proj`` ->
``patch_embed.projection``, ``mlp.fc1/fc2`` -> ``ffn.layers.0.0/1``, window-stage ``attn.*`` ->
``attn.w_msa.*``; slide-attention tensors keep their names and values (head-major qkv, 6-D
bias tables, the one-hot ``dep_conv.weight`` and both conv biases). The PatchMerging tensors
are permuted from the official [x0, x1, x2, x3] concatenation to mmcv's nn.Unfold order
(channel, row offset, column offset). ``attn_mask`` buffers are dropped (recomputed), the
classifier (``norm``, ``head``) is dropped and output norms ``norm0..3`` are added as 1 / 0.

Stage-3/4 bias tables keep the checkpoint's size: the released global-mode files load exactly
into ``SlideSwin(attn_mode='global', pretrain_img_size=224)``; a window-mode model resizes them
while loading (bicubic, not exact; ``SlideSwin._fit_window_tables``). Files already in mmattn's
layout (converted, or det/seg checkpoints) pass through the same checks.
"""
import re

import torch

from mmattn.ops.slide import one_hot_shift_kernel

from .common import CheckpointKeyError
from .convert import register_converter

_RENAMES = [
    (re.compile(r'^patch_embed\.proj\.'), 'patch_embed.projection.'),
    (re.compile(r'^layers\.(\d+)\.'), r'stages.\1.'),
    (re.compile(r'\.mlp\.fc1\.'), '.ffn.layers.0.0.'),
    (re.compile(r'\.mlp\.fc2\.'), '.ffn.layers.1.'),
]
_CLASSIFIER = re.compile(r'^(?:norm|head)\.(?:weight|bias)$')
_BLOCK = re.compile(r'^stages\.(\d+)\.blocks\.(\d+)\.')


def unfold_order(num_channels):
    """Index into the official [x0, x1, x2, x3] 4C axis for each mmcv nn.Unfold channel.

    Official chunk t holds the 2x2 cell (row r, col s) with t = r + 2 s (x1 is (odd row, even
    col)); nn.Unfold lays out channel c, then r, then s: position c*4 + r*2 + s.
    """
    c = torch.arange(num_channels).view(-1, 1, 1)
    r = torch.arange(2).view(1, -1, 1)
    s = torch.arange(2).view(1, 1, -1)
    return ((r + 2 * s) * num_channels + c).flatten()


def _window_side(table):
    return (round(table.shape[0]**0.5) + 1) // 2


def _arch_of(state_dict):
    """SlideSwin keyword arguments that reproduce the tensors of an mmattn-layout state dict."""
    if 'patch_embed.norm.weight' not in state_dict:
        raise CheckpointKeyError('not a Slide-Swin checkpoint: patch_embed.norm.weight is missing')
    depths, heads, windows, slide_stages, kernel_size, deploy = [], [], [], 0, 3, True
    for i in range(4):
        blocks = {int(m.group(2)) for k in state_dict
                  if (m := _BLOCK.match(k)) and int(m.group(1)) == i}
        if not blocks:
            raise CheckpointKeyError(f'Slide-Swin checkpoint has no blocks in stage {i}')
        depths.append(max(blocks) + 1)
        prefix = f'stages.{i}.blocks.0.attn.'
        slide_table = state_dict.get(prefix + 'relative_position_bias_table')
        if slide_table is not None:
            slide_stages = i + 1
            heads.append(slide_table.shape[1])
            kernel_size = round(slide_table.shape[3]**0.5)
            deploy = prefix + 'dep_conv1.weight' not in state_dict
        else:
            table = state_dict.get(prefix + 'w_msa.relative_position_bias_table')
            if table is None:
                raise CheckpointKeyError(f'stage {i} has neither slide nor window attention')
            heads.append(table.shape[1])
            windows.append(_window_side(table))
    arch = dict(arch=dict(embed_dims=state_dict['patch_embed.norm.weight'].shape[0],
                          depths=depths, num_heads=heads),
                num_slide_stages=slide_stages, kernel_size=kernel_size, deploy=deploy)
    if len(windows) == 2 and windows[0] == 2 * windows[1] and windows[0] % 2 == 0:
        arch.update(attn_mode='global', pretrain_img_size=16 * windows[0])
    elif windows and all(w == windows[0] for w in windows):
        arch.update(window_size=windows[0])
    elif windows:
        raise CheckpointKeyError(f'stage-3/4 windows {windows} fit neither the global mode '
                                 '(W3 = 2 W4) nor one window size')
    return arch


def _rename(key, slide_stages):
    for pattern, repl in _RENAMES:
        key = pattern.sub(repl, key)
    m = _BLOCK.match(key)
    if m and int(m.group(1)) not in slide_stages and '.attn.' in key:
        key = key.replace('.attn.', '.attn.w_msa.', 1)
    return key


def _check_shift_kernels(state_dict):
    """Raise ValueError for a two-path ``dep_conv.weight`` that is not the one-hot kernel."""
    for key, value in state_dict.items():
        if key.endswith('attn.dep_conv.weight'):
            expected = one_hot_shift_kernel(value.shape[0] // value.shape[-1]**2, value.shape[-1])
            if not torch.equal(value.float(), expected):
                raise ValueError(f'{key} is not the one-hot shift kernel (1 at tap i of output '
                                 'channel c*k*k + i, 0 elsewhere)')


@register_converter('slide_swin', model='SlideSwin', out_norms=True,
                    drops='the classifier norm.*, head.* and the attn_mask buffers, recomputed')
def convert_slide_swin(state_dict):
    """Official (or mmattn-layout) Slide-Swin state dict -> mmattn ``SlideSwin`` state dict.

    Args:
        state_dict (dict): tensors, ``model.``/``backbone.`` prefixes already stripped.

    Returns:
        tuple: (state dict, ``SlideSwin`` kwargs ``_arch_of(state dict)``); window-mode models
        of the same arch load the state dict too (stage-3/4 tables resized, not exact).

    Raises:
        CheckpointKeyError: unknown or missing keys.
        ValueError: a two-path file whose ``dep_conv.weight`` is not the one-hot kernel.
    """
    official = any(k.startswith('layers.') for k in state_dict)
    slide_stages = {int(k.split('.')[1]) for k in state_dict
                    if k.startswith(('layers.', 'stages.')) and k.endswith('dep_conv.weight')}
    converted = {}
    for key, value in state_dict.items():
        if _CLASSIFIER.match(key) or key.endswith('attn_mask'):
            continue
        if official:
            key = _rename(key, slide_stages)
            if '.downsample.' in key:  # [x0, x1, x2, x3] -> nn.Unfold order (4C axis)
                value = value[..., unfold_order(value.shape[-1] // 4)].contiguous()
        converted[key] = value
    arch = _arch_of(converted)
    if not arch['deploy']:
        _check_shift_kernels(converted)
    return converted, arch
