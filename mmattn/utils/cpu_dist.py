"""Distributed runs (``--launcher pytorch``: torchrun; ``--launcher slurm``: srun) on machines
without CUDA.

mmengine 0.10.7 assumes GPUs in three places; :func:`setup_cpu_distributed` works around each
from the config / process side, nothing in site-packages is changed:

1. ``init_dist('pytorch')`` and ``init_dist('slurm')`` call ``torch.cuda.set_device``, which
   raises on a CPU-only torch. The Runner skips ``init_dist`` when a process group exists, so
   the gloo group is created here first from the ``env://`` variables (set by torchrun, or from
   srun's ``SLURM_*`` variables by :mod:`mmattn.utils.slurm`).
2. The Runner wraps the model in ``MMDistributedDataParallel(device_ids=[LOCAL_RANK])``; DDP
   rejects ``device_ids`` for CPU modules. ``model_wrapper_cfg`` with ``device_ids=None`` wins
   over that default.
3. Stock configs ask for NCCL (``env_cfg.dist_cfg.backend``) and SyncBN (mmseg heads,
   ``sync_bn``); NCCL needs CUDA and torch's SyncBatchNorm raises in training on CPU tensors.
   The backend becomes gloo and SyncBN becomes ``CPUSyncBN``
   (:class:`mmattn.models.layers.CPUSyncBatchNorm`: statistics all-reduced over the gloo group,
   so N processes x B images train like one process with N*B images). ``sync_bn='torch'``
   (convert every BN of the model) becomes CPUSyncBN for every ``type='BN'`` norm config of the
   model; BatchNorm layers a model creates without a norm config stay per-process.
"""
import logging

import torch
from mmengine.logging import print_log

_SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN')
_BN_TYPES = ('BN', 'BN2d')


def needs_cpu_distributed(launcher):
    return launcher not in (None, 'none') and not torch.cuda.is_available()


def replace_norm_types(node, types, new_type='CPUSyncBN'):
    """Set ``type=new_type`` in every dict below ``node`` whose type is in ``types``; returns
    the count."""
    count = 0
    if isinstance(node, dict):
        if node.get('type') in types:
            node['type'] = new_type
            count += 1
        for value in node.values():
            count += replace_norm_types(value, types, new_type)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += replace_norm_types(value, types, new_type)
    return count


def cpu_distributed_cfg(cfg):
    """Config side of the workarounds (2 and 3 above); the config is changed in place."""
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg', None)
    if wrapper is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    else:
        wrapper['device_ids'] = None
    replaced = replace_norm_types(cfg.model, _SYNC_BN_TYPES)
    if cfg.get('sync_bn', None) is not None:
        cfg.sync_bn = None
        replaced += replace_norm_types(cfg.model, _BN_TYPES)
    if replaced:
        print_log(f'mmattn: distributed on CPU: {replaced} SyncBN norm config(s) use CPUSyncBN '
                  '(torch SyncBatchNorm has no CPU path; statistics are all-reduced over gloo)',
                  logger='current', level=logging.INFO)
    return cfg


def init_cpu_process_group(launcher):
    """Process side (workaround 1): create the gloo group before the Runner is built."""
    import torch.distributed as dist
    if launcher in ('pytorch', 'slurm') and dist.is_available() and not dist.is_initialized():
        dist.init_process_group(backend='gloo')


def setup_cpu_distributed(cfg):
    """All of the above when ``cfg.launcher`` is distributed and CUDA is absent; else no-op."""
    if not needs_cpu_distributed(cfg.get('launcher', 'none')):
        return False
    cpu_distributed_cfg(cfg)
    init_cpu_process_group(cfg.launcher)
    return True
