"""Config keys nothing reads, found before the Runner starts.

mmengine reads a fixed set of top-level keys; ``--cfg-options max_epochs=1`` sets a top-level
key that changes nothing once ``train_cfg`` holds its own value, and the run silently trains the
configured schedule. A misspelled dataloader or loop key
(``train_dataloader.batch_szie``) reaches ``DataLoader(**cfg)`` / the loop's constructor and
fails after the environment and the whole config are logged. :func:`config_key_problems` finds
both, each as one line with the key that is read.
"""
import difflib
import inspect

# top-level keys mmengine's Runner (``Runner.from_cfg`` and the methods reading ``self.cfg``),
# mmdet's / mmseg's runners and mmattn's tools read
READ_KEYS = frozenset({
    'model', 'work_dir', 'train_dataloader', 'val_dataloader', 'test_dataloader', 'train_cfg',
    'val_cfg', 'test_cfg', 'auto_scale_lr', 'optim_wrapper', 'param_scheduler', 'val_evaluator',
    'test_evaluator', 'default_hooks', 'custom_hooks', 'data_preprocessor', 'load_from',
    'resume', 'launcher', 'env_cfg', 'log_processor', 'log_level', 'visualizer', 'default_scope',
    'randomness', 'experiment_name', 'model_wrapper_cfg', 'sync_bn', 'find_unused_parameters',
    'activation_checkpointing', 'efficient_conv_bn_eval', 'compile', 'custom_imports',
    'runner_type', 'tta_model', 'tta_pipeline', 'strategy',
})

# what mmengine's Runner.build_dataloader pops before DataLoader(**rest)
_LOADER_EXTRA = frozenset({'dataset', 'sampler', 'batch_sampler', 'collate_fn', 'worker_init_fn',
                           'num_batch_per_epoch', 'disable_subprocess_warning'})
_LOOP_DEFAULTS = {'val_cfg': 'ValLoop', 'test_cfg': 'TestLoop'}
_LOOP_ARGS_FILLED = frozenset({'self', 'runner', 'dataloader', 'evaluator'})
_SAME_MEANING = {'max_iters': 'max_epochs', 'max_epochs': 'max_iters'}
_READ_AS = {'seed': 'randomness.seed', 'deterministic': 'randomness.deterministic'}  # mmdet 2.x


def _suggest(key, candidates, cutoff=0.6):
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=cutoff)
    return close[0] if close else None


def _dataloader_args():
    from torch.utils.data import DataLoader
    return set(inspect.signature(DataLoader.__init__).parameters) - {'self'} | _LOADER_EXTRA


def _loop_args(loop_type, scope):
    """Keyword arguments of a loop class (None when they cannot be known: an unregistered
    type, or a constructor taking ``**kwargs`` all the way up)."""
    import importlib
    try:
        registry = importlib.import_module(f'{scope}.registry').LOOPS if scope else None
    except ImportError:
        registry = None
    if registry is None:
        from mmengine.registry import LOOPS as registry
    cls = registry.get(str(loop_type)) if isinstance(loop_type, str) else loop_type
    if not inspect.isclass(cls):
        return None
    for klass in cls.__mro__:
        if '__init__' not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        named = [p.name for p in params
                 if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if any(p.kind == p.VAR_KEYWORD for p in params) and named == ['self']:
            continue  # forwards everything to its parent
        if any(p.kind == p.VAR_KEYWORD for p in params):
            return None
        return set(named) - _LOOP_ARGS_FILLED | {'type'}
    return None


def _train_loop_type(train_cfg):
    if 'type' in train_cfg:
        return train_cfg['type']
    by_epoch = train_cfg.get('by_epoch', 'max_epochs' in train_cfg)
    return 'EpochBasedTrainLoop' if by_epoch else 'IterBasedTrainLoop'


def _unknown_keys(section, values, allowed, what):
    problems = []
    for key in values:
        if key in allowed or key.startswith('_'):  # _scope_ of a scope-prefixed base
            continue
        close = _suggest(key, allowed)
        hint = f'; did you mean {section}.{close}' + (
            f' (now {values[close]!r})' if close in values else '') + '?' if close else ''
        problems.append(f'{section}.{key} is not an argument of {what}{hint}')
    return problems


def _section_problems(cfg, scope, sections):
    problems = []
    loader_args = None
    for name in sections:
        values = cfg.get(name, None)
        if not isinstance(values, dict):
            continue
        if name.endswith('_dataloader'):
            loader_args = loader_args or _dataloader_args()
            problems += _unknown_keys(name, values, loader_args, 'the DataLoader')
            continue
        loop_type = _train_loop_type(values) if name == 'train_cfg' else \
            values.get('type', _LOOP_DEFAULTS[name])
        allowed = _loop_args(loop_type, scope)
        if allowed is not None:
            if name == 'train_cfg' and 'type' not in values:
                allowed = allowed | {'by_epoch'}
            shown = str(loop_type).split('.')[-1] if isinstance(loop_type, str) else \
                loop_type.__name__
            problems += _unknown_keys(name, values, allowed, shown)
    return problems


def _leaf_keys(cfg):
    """``{name: [(dotted path, value)]}`` of every key below the top level whose value is not a
    dict (list items are numbered, as ``--cfg-options`` addresses them), in config order."""
    found = {}

    def visit(node, path):
        items = node.items() if isinstance(node, dict) else \
            enumerate(node) if isinstance(node, (list, tuple)) else ()
        for key, value in items:
            if isinstance(key, str) and key.startswith('_'):
                continue
            where = f'{path}.{key}'
            if isinstance(value, dict) or (isinstance(value, (list, tuple)) and any(
                    isinstance(v, (dict, list, tuple)) for v in value)):
                visit(value, where)
            elif isinstance(key, str):
                found.setdefault(key, []).append((where, value))

    for key in cfg.keys():
        if key in READ_KEYS:
            visit(cfg[key], key)
    return found


def _top_level_problems(cfg, overrides):
    """Top-level ``--cfg-options`` keys nothing reads, with the keys of that name the run does
    read (a config file's own top-level variables are not judged: they are read while the file
    is parsed, and a stale ``max_epochs = 12`` of a base next to the ``train_cfg`` a child set
    directly is harmless)."""
    leaves = _leaf_keys(cfg)
    problems = []
    for key in dict.fromkeys(k.split('.')[0] for k in overrides):
        if key in READ_KEYS or key.startswith('_') or key not in cfg:
            continue
        value = cfg[key]
        targets = leaves.get(key) or leaves.get(_SAME_MEANING.get(key), [])
        if not targets and key in _READ_AS:
            problems.append(f'nothing reads the top-level key {key}; mmengine reads '
                            f'{_READ_AS[key]}: set {_READ_AS[key]}={value!r} instead')
            continue
        if not targets:
            close = _suggest(key, list(READ_KEYS) + list(leaves), cutoff=0.8)
            if close in READ_KEYS:
                problems.append(f'nothing reads the top-level key {key}; did you mean {close}?')
                continue
            targets = leaves.get(close, [])
        if not targets:
            continue  # no key it could be meant for: perhaps a custom hook reads runner.cfg
        listed = ', '.join(f'{k} (now {v!r})' for k, v in targets[:3])
        more = f' and {len(targets) - 3} more' if len(targets) > 3 else ''
        where = f'{targets[0][0]}={value!r}' if len(targets) == 1 else 'those'
        problems.append(f'{key}={value!r} is a top-level key nothing reads: the run reads '
                        f'{listed}{more}; set {where} instead')
    return problems


def config_key_problems(cfg, scope=None, overrides=(), sections=None):
    """Keys of ``cfg`` that nothing reads, one line each.

    Args:
        cfg (Config): the merged config.
        scope (str): ``'mmdet'`` / ``'mmseg'`` (loop types of their registries).
        overrides (Iterable[str]): the ``--cfg-options`` keys (dotted); their top-level keys
            that nothing reads are flagged with the key meant (same name or spelling).
        sections (Iterable[str]): the dataloader / loop sections the tool builds (default: all).

    Returns:
        list[str]: the problems (empty when every key is read).
    """
    sections = sections or ('train_dataloader', 'val_dataloader', 'test_dataloader',
                            'train_cfg', 'val_cfg', 'test_cfg')
    return _top_level_problems(cfg, list(overrides)) + _section_problems(cfg, scope, sections)


def check_config_keys_or_exit(cfg, scope, overrides, tool, sections=None):
    """:func:`config_key_problems` as one line naming ``tools/<tool>.py``."""
    problems = config_key_problems(cfg, scope, overrides, sections)
    if problems:
        more = f' (and {len(problems) - 1} more)' if len(problems) > 1 else ''
        raise SystemExit(f'tools/{tool}.py: config error: {problems[0]}{more}')
