"""Exact resume: a killed run restarted with ``--resume`` continues the same run.

mmengine 0.10.7 restores the model, optimizer, schedulers and the epoch / iteration counters,
but not what decides the next batch and its random augmentation:

* the python / numpy / torch random states (``RandomFlip``, ``RandomResize``, dropout, drop
  path all draw from them), so every later loss differs from the uninterrupted run;
* the position inside the epoch: an epoch-based run resumed from an iteration checkpoint
  taken mid-epoch replays the whole epoch (and ends with more iterations than configured);
  the iteration-based loop does skip the consumed batches, but by loading and augmenting each
  of them again (slow on real data, and it draws from the random states).

Four pieces fix this; :func:`enable_exact_resume` puts them into a training config and
``tools/train.py`` calls it for every config:

* :class:`ResumableBatchSampler` wraps the train dataloader's batch sampler (mmdet's
  ``AspectRatioBatchSampler`` or a plain batching of the sampler). On resume it drops the
  batches already trained in the current pass as index lists (no image is read) and sets the
  saved random states right before the first batch that is loaded again.
* :class:`ResumableEpochBasedTrainLoop` / :class:`ResumableIterBasedTrainLoop`: the stock loops,
  resuming mid-epoch / mid-pass through the sampler skip and with the stock batch indices.
* :class:`ExactResumeHook` stores the random states and the sampler position under
  ``meta['exact_resume']`` of every checkpoint and hands them to the loop on resume. In a
  distributed run only rank 0 writes checkpoints, while every rank draws from its own random
  streams (an augmentation whose draws depend on the image, such as mmseg's ``RandomCrop``
  retries under ``cat_max_ratio``, makes them diverge even from one seed), so the hook gathers
  every rank's states after each iteration and epoch, the checkpoint holds them all, and each
  rank resumes with its own (rank 0's are used when the process count changed). It also
  keeps validation from drawing on the training random streams (the validation dataloader
  draws a seed from torch's generator each time it starts), so a run validated at a
  checkpoint continues exactly as one resumed from it.

Exactness holds for ``num_workers=0`` (the demo configs): the augmentation then runs in the
main process. With worker processes the order of the batches and the model's random draws are
restored; the workers' own random streams restart from mmengine's per-worker seeds.

The loops' ``run`` bodies and the restart of the iteration-based loop's iterator rely on
mmengine internals; they live in :mod:`mmattn.engine.mmengine_internals`, which says why.
"""
import logging
import random

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info, get_world_size
from mmengine.logging import print_log
from mmengine.registry import DATA_SAMPLERS, HOOKS, LOOPS
from mmengine.hooks import Hook
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop
from torch.utils.data import BatchSampler

from .mmengine_internals import (restart_infinite_iterator, run_epoch_based_loop, run_epoch_from,
                                 run_iter_based_loop)

META_KEY = 'exact_resume'


def get_rng_state():
    """python / numpy / torch (and CUDA) random states, as tensors and plain python values
    (they load under torch's weights-only unpickler without widening the allow-list)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = dict(
        python=random.getstate(),
        numpy=(name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
               float(cached)),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    """Inverse of :func:`get_rng_state`."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


@DATA_SAMPLERS.register_module()
class ResumableBatchSampler:
    """A batch sampler that can start a pass after its first ``skip`` batches.

    Args:
        sampler: the index sampler (built by the Runner from ``train_dataloader.sampler``).
        batch_size (int): images per batch.
        batch_sampler (dict, optional): the batch sampler to wrap (e.g. mmdet's
            ``AspectRatioBatchSampler``); None batches the sampler in order, as the DataLoader
            does without one.
        drop_last (bool): for the plain batching only. Default: False.
    """

    def __init__(self, sampler, batch_size, batch_sampler=None, drop_last=False):
        if batch_sampler is None:
            self.batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        elif isinstance(batch_sampler, dict):
            self.batch_sampler = DATA_SAMPLERS.build(
                batch_sampler, default_args=dict(sampler=sampler, batch_size=batch_size))
        else:
            self.batch_sampler = batch_sampler
        self.sampler = sampler  # DistSamplerSeedHook calls batch_sampler.sampler.set_epoch
        self.batch_size = batch_size
        self.passes = 0  # passes started (a pass: one __iter__, i.e. one epoch)
        self.last_batch = None
        self._pending = None

    def resume_pass(self, skip, rng_state=None):
        """The next pass drops its first ``skip`` batches, then sets ``rng_state``."""
        self._pending = (int(skip), rng_state)

    def __iter__(self):
        pending, self._pending = self._pending, None
        self.passes += 1
        skip, rng_state = pending or (0, None)
        for index, batch in enumerate(self.batch_sampler):
            if index < skip:
                continue
            if rng_state is not None:
                set_rng_state(rng_state)
                rng_state = None
            self.last_batch = batch  # the batch being loaded (named if loading it fails)
            yield batch
        if rng_state is not None:  # the checkpoint was taken after the pass's last batch
            set_rng_state(rng_state)

    def __len__(self):
        return len(self.batch_sampler)


def _batch_sampler(loader):
    sampler = getattr(loader, 'batch_sampler', None)
    return sampler if isinstance(sampler, ResumableBatchSampler) else None


def _private_loader_generator(loader):
    """Each DataLoader iterator draws a base seed from torch's global generator unless the
    loader has its own; give the train loader one so that starting an epoch does not move the
    random stream the augmentation and the model use (the seed only matters for worker
    processes, which mmengine seeds itself)."""
    if getattr(loader, 'generator', None) is None:
        loader.generator = torch.Generator()
        loader.generator.manual_seed(0)


def _own_rng_state(state):
    """This rank's random states in a saved resume state (rank 0's: ``state['rng']``)."""
    rank, world = get_dist_info()
    ranks = state.get('rank_rng')
    if ranks and len(ranks) != world:
        print_log(f'mmattn: the checkpoint was written by {len(ranks)} processes, this run has '
                  f'{world}: every rank resumes with the random states of rank 0',
                  logger='current', level=logging.WARNING)
        return state['rng']
    return ranks[rank] if ranks and rank > 0 else state['rng']


class _ResumeMixin:
    """What both loops share: the position of the next batch inside the current pass."""

    def _init_resume(self):
        _private_loader_generator(self.dataloader)
        self._seen_pass = None
        self._trained_in_pass = 0
        self._resume_state = None
        self._rank_rng = None

    def gather_rank_rng_states(self):
        """Every rank's random states, for the next checkpoint (a collective: every rank calls
        it, after each iteration and epoch; nothing happens in a single process)."""
        if get_world_size() > 1:
            self._rank_rng = all_gather_object(get_rng_state())

    def count_trained_batch(self):
        """Called after each training iteration (by :class:`ExactResumeHook`)."""
        sampler = _batch_sampler(self.dataloader)
        passes = sampler.passes if sampler is not None else None
        if passes != self._seen_pass:
            self._seen_pass, self._trained_in_pass = passes, 0
        self._trained_in_pass += 1

    def exact_resume_state(self, meta):
        """What a checkpoint needs to continue exactly (``meta``: the checkpoint's meta)."""
        # a checkpoint written after the epoch's last hook starts the next epoch afresh
        epoch_done = meta.get('epoch', self.epoch) != self.epoch
        sampler = _batch_sampler(self.dataloader)
        state = dict(
            iter=int(meta.get('iter', self.iter)),
            skip=0 if epoch_done else self._trained_in_pass,
            sampler_epoch=getattr(getattr(sampler, 'sampler', None), 'epoch', None),
            rng=get_rng_state())
        if self._rank_rng is not None:
            state['rank_rng'] = self._rank_rng
        return state

    def load_exact_resume_state(self, state):
        self._resume_state = state

    def _take_resume_state(self):
        """The saved state if this run was resumed from it (None for a fresh or load_from run)."""
        state, self._resume_state = self._resume_state, None
        if state is None or self.iter == 0 or state['iter'] != self.iter:
            return None
        sampler = _batch_sampler(self.dataloader)
        if sampler is None:
            print_log('mmattn: the train dataloader has no ResumableBatchSampler; the run '
                      'resumes at the start of the epoch with fresh random states',
                      logger='current', level=logging.WARNING)
            return None
        sampler.resume_pass(state['skip'], _own_rng_state(state))
        self._seen_pass, self._trained_in_pass = sampler.passes + 1, state['skip']
        return state


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(_ResumeMixin, EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` that resumes in the middle of an epoch (see module doc)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_resume()
        self._batch_offset = 0

    def run(self):
        # the stock run() with the resume position taken after before_train (mmengine has no
        # seam there: see mmengine_internals.run_epoch_based_loop)
        return run_epoch_based_loop(self, self._start_resumed_epoch)

    def _start_resumed_epoch(self):
        state = self._take_resume_state()
        self._batch_offset = state['skip'] if state else 0

    def run_epoch(self):
        offset, self._batch_offset = self._batch_offset, 0
        run_epoch_from(self, offset)  # batch indices go on from the skipped batches


@LOOPS.register_module()
class ResumableIterBasedTrainLoop(_ResumeMixin, IterBasedTrainLoop):
    """``IterBasedTrainLoop`` whose resume skips the trained batches as indices (no loading,
    no random draws) instead of loading them again."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_resume()

    def run(self):
        # the stock run() without its resume skip, which loads every trained batch again (see
        # mmengine_internals.run_iter_based_loop)
        return run_iter_based_loop(self, self._start_resumed_pass)

    def _start_resumed_pass(self):
        state = self._take_resume_state()
        if state is None and self.iter > 0:
            # mmengine's own loop would load (and drop) every trained batch again to skip them
            print_log(f'mmattn: the checkpoint resumed from holds no exact-resume state (not '
                      f'written by an mmattn run): training goes on from iteration {self.iter} '
                      'with the data from the start of a pass and fresh random states',
                      logger='current', level=logging.WARNING)
        if state is not None:
            if state['sampler_epoch'] is not None:  # a finite sampler restarted per pass
                self.dataloader.batch_sampler.sampler.set_epoch(state['sampler_epoch'])
            # the iterator built in __init__ predates the resume (see mmengine_internals)
            restart_infinite_iterator(self, state['sampler_epoch'])


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Saves / restores the random states and the sampler position (see module doc)."""

    priority = 'VERY_HIGH'  # count the batch before CheckpointHook (VERY_LOW) saves

    def __init__(self):
        self._val_rng = None

    @staticmethod
    def _loop(runner):
        loop = runner.train_loop
        return loop if isinstance(loop, _ResumeMixin) else None

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        loop = self._loop(runner)
        if loop is not None:
            loop.count_trained_batch()
            loop.gather_rank_rng_states()

    def after_train_epoch(self, runner):
        loop = self._loop(runner)
        if loop is not None:
            loop.gather_rank_rng_states()

    def before_save_checkpoint(self, runner, checkpoint):
        loop = self._loop(runner)
        if loop is not None:
            checkpoint['meta'][META_KEY] = loop.exact_resume_state(checkpoint['meta'])

    def after_load_checkpoint(self, runner, checkpoint):
        state = checkpoint.get('meta', {}).get(META_KEY)
        loop = self._loop(runner) if state is not None else None
        if loop is not None:
            loop.load_exact_resume_state(state)

    def before_val(self, runner):
        self._val_rng = get_rng_state()

    def after_val(self, runner):
        if self._val_rng is not None:
            set_rng_state(self._val_rng)
            self._val_rng = None


_LOOP_TYPES = {
    'EpochBasedTrainLoop': 'ResumableEpochBasedTrainLoop',
    'IterBasedTrainLoop': 'ResumableIterBasedTrainLoop',
}


def enable_exact_resume(cfg):
    """Switch a training config to the resumable loop, batch sampler and hook (in place), and
    add :class:`~mmattn.engine.ExceptionCheckpointHook` (a failing run saves its last completed
    iteration).

    Returns:
        bool: False when the config's train loop is a custom type this cannot replace (the
        run then trains and resumes as mmengine does, and a warning says so).
    """
    train_cfg = cfg.get('train_cfg', None)
    loader = cfg.get('train_dataloader', None)
    if not train_cfg or not loader:
        return False
    loop_type = train_cfg.get('type', None)
    if loop_type is None:
        loop_type = 'EpochBasedTrainLoop' if train_cfg.pop('by_epoch', False) \
            else 'IterBasedTrainLoop'
        if 'max_epochs' in train_cfg and loop_type == 'IterBasedTrainLoop':
            loop_type = 'EpochBasedTrainLoop'
    loop_type = str(loop_type).split('.')[-1]
    if loop_type in _LOOP_TYPES.values():
        pass
    elif loop_type in _LOOP_TYPES:
        loop_type = _LOOP_TYPES[loop_type]
    else:
        print_log(f'mmattn: train loop {loop_type} is not one of {sorted(_LOOP_TYPES)}: '
                  '--resume restores what mmengine restores (no random states, no position '
                  'inside the epoch)', logger='current', level=logging.WARNING)
        return False
    train_cfg['type'] = loop_type
    batch_sampler = loader.get('batch_sampler', None)
    if not (isinstance(batch_sampler, dict)
            and str(batch_sampler.get('type', '')).endswith('ResumableBatchSampler')):
        loader['batch_sampler'] = dict(type='ResumableBatchSampler', batch_sampler=batch_sampler,
                                       drop_last=loader.pop('drop_last', False))
    hooks = list(cfg.get('custom_hooks', None) or [])
    for name in ('ExactResumeHook', 'ExceptionCheckpointHook'):
        if not any(str(h.get('type', '')).endswith(name) for h in hooks):
            hooks.append(dict(type=name))
    cfg.custom_hooks = hooks
    return True
