"""What tools/train.py and tools/test.py share: config loading and Runner building."""
import os.path as osp
import re

from mmengine.config import Config

from . import cpu_dist, slurm
from .config_check import check_config_keys_or_exit


def load_tool_config(args, tool):
    """Config with ``--cfg-options``, launcher, work_dir and the CPU-distributed fixes applied
    (``--launcher slurm``: the ``SLURM_*`` variables exported as torch.distributed's first).

    Returns:
        tuple[Config, str]: the config and its codebase, ``'mmdet'`` or ``'mmseg'``.
    """
    if args.launcher == 'slurm':
        slurm.setup_slurm_env(tool)  # one line when srun's variables are missing
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    scope = cfg.get('default_scope', None)
    if scope not in ('mmdet', 'mmseg'):
        raise SystemExit(f'tools/{tool}.py: unsupported default_scope {scope!r} in the config; '
                         'expected "mmdet" or "mmseg" (inherit an mmdet:: or mmseg:: runtime base)')
    # a key nothing reads (max_epochs at the top level, a misspelled dataloader key): one line
    check_config_keys_or_exit(cfg, scope, list(args.cfg_options or {}), tool, _sections(cfg, tool))
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


def _sections(cfg, tool):
    """The dataloader and loop sections ``tools/<tool>.py`` builds."""
    if tool != 'train':
        return ('test_dataloader', 'test_cfg')
    sections = ('train_dataloader', 'train_cfg')
    if cfg.get('val_cfg', None) is not None:
        sections += ('val_dataloader', 'val_cfg')
    return sections


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


def check_work_dir_or_exit(work_dir, tool):
    """One line naming ``work_dir`` when it cannot be created or written (read-only, full)."""
    import os
    import tempfile
    if osp.exists(work_dir) and not osp.isdir(work_dir):
        raise SystemExit(f'tools/{tool}.py: work_dir {osp.abspath(work_dir)} is a file, not a '
                         'directory: pass a directory to --work-dir')
    try:
        os.makedirs(work_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=work_dir, prefix='.write_test') as f:
            f.write(b'x' * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise SystemExit(f'tools/{tool}.py: work_dir {osp.abspath(work_dir)} is not writable: '
                         f'{exc.strerror or exc}') from None


def _checkpoint_in(folder):
    """``': pass FILE (...)'`` naming the checkpoint a work dir's ``last_checkpoint`` names (or
    its newest ``*.pth``), or ``' and holds no *.pth file'``."""
    import glob
    marker = osp.join(folder, 'last_checkpoint')
    if osp.isfile(marker):
        with open(marker) as f:
            named = f.read().strip()
        if named and osp.isfile(named):
            return f': pass {named} (its last_checkpoint)'
    files = sorted(glob.glob(osp.join(folder, '*.pth')), key=osp.getmtime)
    if files:
        return f': pass one of its {len(files)} *.pth files, e.g. {files[-1]} (the newest)'
    return ' and holds no *.pth file'


def check_checkpoint_file_or_exit(path, tool):
    """One line when a local checkpoint is missing, empty, truncated or not a PyTorch file."""
    from mmattn.converters.files import checkpoint_file_problem
    if '://' in str(path):
        return
    if osp.isdir(path):
        raise SystemExit(f'tools/{tool}.py: {path} is a directory, not a checkpoint file'
                         f'{_checkpoint_in(path)}')
    if not osp.isfile(path):
        raise SystemExit(f'tools/{tool}.py: checkpoint not found: {path}')
    problem = checkpoint_file_problem(path)
    if problem:
        raise SystemExit(f'tools/{tool}.py: {path}: {problem}')


_NOT_REGISTERED = re.compile(r'`?([\w.]+)`? is not in the (?:(\w+)::)?([\w ]+?) registry')
_BUILD_PREFIX = re.compile(r'class `(\w+)` in [\w./\\-]+(?:\.py)?: ')


def _registry_names(scope, name):
    """Names registered in ``scope``'s registry called ``name`` and in its parents."""
    import importlib

    from mmengine.registry import Registry
    names = set()
    try:
        module = importlib.import_module(f'{scope}.registry')
    except ImportError:
        return names
    for value in vars(module).values():
        if isinstance(value, Registry) and value.name == name:
            registry = value
            while registry is not None:
                names.update(registry.module_dict)
                registry = registry.parent
    return names


def registry_error_or_none(exc):
    """One line for mmengine's "X is not in the S::N registry" (with the nearest registered
    names), or None when ``exc`` is another error."""
    import difflib
    text = str(exc.args[0]) if getattr(exc, 'args', None) else str(exc)
    match = _NOT_REGISTERED.search(text)
    if match is None:
        return None
    wanted, scope, name = match.groups()
    short = wanted.split('.')[-1]
    names = sorted(_registry_names(scope or 'mmengine', name))
    by_lower = {n.lower(): n for n in names}
    close = difflib.get_close_matches(short.lower(), list(by_lower), n=3, cutoff=0.6)
    hint = (' did you mean ' + ' or '.join(repr(by_lower[c]) for c in close) + '?') if close \
        else ''
    return f"unknown type '{wanted}': not registered in the {scope or ''} {name} registry;{hint}"


def config_error_line(exc):
    """An exception raised while building from the config as one line: the innermost class and
    its message (mmengine prefixes every enclosing class and file)."""
    message = registry_error_or_none(exc)
    if message:
        return message
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    classes = _BUILD_PREFIX.findall(text)
    text = _BUILD_PREFIX.sub('', text).strip().splitlines()
    text = text[0] if text else type(exc).__name__
    return f'{classes[-1]}: {text}' if classes else f'{type(exc).__name__}: {text}'


def check_model_cfg_or_exit(cfg, scope, tool):
    """Build ``cfg.model`` once before the Runner (which logs the whole config first): an
    unknown type, arch or argument, or a neck / head whose ``in_channels`` does not match the
    backbone's widths (:func:`mmattn.utils.model_check.channel_mismatch`), stops with one line
    instead of a config dump and a traceback.

    Returns:
        nn.Module or None: the model on the meta device (parameter names and shapes, no
        memory), for :func:`check_checkpoint_or_exit`; None in a distributed launch, where the
        norm layers (CPUSyncBN / SyncBN) need the process group and the Runner builds first.
    """
    from mmengine.registry import init_default_scope

    from .model_check import build_model, channel_mismatch
    if cpu_dist.needs_cpu_distributed(cfg.get('launcher', 'none')) or \
            cfg.get('launcher', 'none') not in (None, 'none'):
        return None
    init_default_scope(scope)
    try:
        model = build_model(cfg.model, scope)
    except Exception as exc:  # noqa: BLE001 - every build failure is a config error here
        raise SystemExit(f'tools/{tool}.py: config error in model: '
                         f'{config_error_line(exc)}') from None
    model.to('meta')  # a CPU-built model (a constructor needed real tensors): free its memory
    message = channel_mismatch(model)
    if message:
        raise SystemExit(f'tools/{tool}.py: config error in model: {message}')
    return model

