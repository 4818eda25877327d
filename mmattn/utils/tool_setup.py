"""What tools/train.py and tools/test.py share: config loading and Runner building."""
import os.path as osp

from mmengine.config import Config

from . import cpu_dist


def load_tool_config(args, tool):
    """Config with ``--cfg-options``, launcher, work_dir and the CPU-distributed fixes applied.

    Returns:
        tuple[Config, str]: the config and its codebase, ``'mmdet'`` or ``'mmseg'``.
    """
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    scope = cfg.get('default_scope', None)
    if scope not in ('mmdet', 'mmseg'):
        raise SystemExit(f'tools/{tool}.py: unsupported default_scope {scope!r} in the config; '
                         'expected "mmdet" or "mmseg" (inherit an mmdet:: or mmseg:: runtime base)')
    # work_dir: CLI > config > ./work_dirs/<config stem>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if cpu_dist.needs_cpu_distributed(args.launcher):
        cpu_dist.cpu_distributed_cfg(cfg)  # gloo, DDP without device_ids, CPU SyncBN
    if args.launcher not in (None, 'none'):
        hooks = list(cfg.get('custom_hooks', None) or [])
        if not any(str(h.get('type', '')).endswith('MeanLogVarsHook') for h in hooks):
            cfg.custom_hooks = hooks + [dict(type='MeanLogVarsHook')]  # log the all-rank mean
    return cfg, scope


def build_runner(cfg, scope):
    """The codebase's Runner (``runner_type`` honoured), after the CPU process group if needed."""
    if scope == 'mmdet':
        from mmdet.registry import RUNNERS
        from mmdet.utils import setup_cache_size_limit_of_dynamo
        setup_cache_size_limit_of_dynamo()
    else:
        from mmseg.registry import RUNNERS
    from mmengine.runner import Runner

    if cpu_dist.needs_cpu_distributed(cfg.launcher):
        cpu_dist.init_cpu_process_group(cfg.launcher)  # mmengine's init_dist needs CUDA
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
