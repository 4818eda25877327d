"""The one place where mmattn relies on mmengine's private names and undocumented behaviour.

:mod:`mmattn.engine` changes what mmengine's Runner does at points where mmengine offers no
public seam: exact resume needs the train loops' ``run`` without the stock resume skip, a fresh
``_InfiniteDataloaderIterator``, and the loops' private counters; atomic checkpoints need to
replace the write inside ``CheckpointHook._save_checkpoint_with_step``; verified loading needs
the loader registered in ``CheckpointLoader._schemes``. Each entry below says what it relies on
and why no public API serves. Nothing else in ``mmattn/`` imports a private mmengine name or
reads a private attribute of an mmengine object (``tests/test_mmengine_internals.py`` scans the
sources).

These were written against mmengine 0.10.7, the version ``requirements/runtime.txt`` pins and
the tests run on, so the supported range is ``MMENGINE_MIN_VERSION <= version <
MMENGINE_MAX_VERSION``:

* not older: the loop bodies below are those of 0.10.7; earlier 0.10 releases differ in them
  (0.10.4 added validation after the last epoch / iteration, 0.10.3 changed how the
  iteration-based loop resumes), and :mod:`mmattn.compat`'s checkpoint allow-list is exactly
  what a 0.10.7 checkpoint holds;
* not 0.11 or newer: mmengine changes private code in its minor releases without notice, and
  no later release has been tested. (mmengine's main branch, 0.11.0rc0 as of October 2025,
  leaves the loops and ``CheckpointHook`` as they are in 0.10.7; widening the range takes a run
  of ``tests/test_resume.py`` on the new version.)

Importing this module (which ``import mmattn.engine``, hence ``import mmattn``, does first)
checks the installed version with :func:`check_mmengine_version`, before any private name is
imported, so another version fails at once with one line saying what to install instead of
failing later inside a training run.
"""
import mmengine
from mmengine.utils import digit_version

MMENGINE_MIN_VERSION = '0.10.7'
"""Oldest supported mmengine (inclusive): the version the internals below were written for."""

MMENGINE_MAX_VERSION = '0.11.0'
"""First unsupported mmengine (exclusive; its pre-releases, such as 0.11.0rc0, too)."""


def check_mmengine_version(version=None):
    """Refuse an mmengine outside ``[MMENGINE_MIN_VERSION, MMENGINE_MAX_VERSION)``.

    Args:
        version (str, optional): the version to check. Defaults to None: the installed
            ``mmengine.__version__``.

    Raises:
        ImportError: the version is outside the supported range; one line naming it, the
            range and the ``pip install`` that fixes it.
    """
    version = mmengine.__version__ if version is None else version
    installed = digit_version(version)
    # digit_version puts a pre-release just below its release (0.11.0rc0 < 0.11.0): compare
    # the release numbers with the exclusive upper bound so that 0.11.0rc0 is refused too
    if not (installed >= digit_version(MMENGINE_MIN_VERSION)
            and installed[:4] < digit_version(MMENGINE_MAX_VERSION)[:4]):
        raise ImportError(
            f'mmattn: mmengine=={version} is installed, but mmattn.engine supports '
            f'mmengine>={MMENGINE_MIN_VERSION},<{MMENGINE_MAX_VERSION} only (it relies on '
            'mmengine internals, see mmattn.engine.mmengine_internals); run: '
            f'pip install "mmengine>={MMENGINE_MIN_VERSION},<{MMENGINE_MAX_VERSION}"')


check_mmengine_version()

# Imported after the check: on another mmengine a private name may be gone, and the check's
# line says more than the ImportError of that name would.
import os.path as osp  # noqa: E402

from mmengine.hooks import CheckpointHook  # noqa: E402
from mmengine.runner.checkpoint import CheckpointLoader  # noqa: E402
# Private: see restart_infinite_iterator.
from mmengine.runner.loops import _InfiniteDataloaderIterator  # noqa: E402

# --------------------------------------------------------------------------- train loops


def run_epoch_based_loop(loop, before_first_epoch):
    """``EpochBasedTrainLoop.run`` of mmengine 0.10.7 with ``before_first_epoch()`` called
    between the ``before_train`` hook and the first epoch.

    The resume position can only be handed to the batch sampler once ``Runner.resume`` has
    loaded the checkpoint (``Runner.train`` calls it after building the loop) and must be
    before the first batch is drawn; the stock ``run`` calls the ``before_train`` hook and goes
    straight into the epochs, with nothing overridable in between. The body reads the loop's
    private ``_epoch`` / ``_max_epochs`` and calls its private ``_decide_current_val_interval``,
    as the stock one does (the loop has no public setter for its counters).

    Args:
        loop (EpochBasedTrainLoop): the loop to run.
        before_first_epoch (callable): called with no arguments.

    Returns:
        nn.Module: the trained model (``loop.runner.model``).
    """
    loop.runner.call_hook('before_train')
    before_first_epoch()
    while loop._epoch < loop._max_epochs and not loop.stop_training:
        loop.run_epoch()
        _validate_if_due(loop, loop._epoch, loop._max_epochs)
    loop.runner.call_hook('after_train')
    return loop.runner.model


def _validate_if_due(loop, step, max_steps):
    """The stock loops' check after an epoch / iteration: update the validation interval
    (the private ``_decide_current_val_interval``), then validate at ``val_begin``, every
    ``val_interval`` steps and after the last one."""
    loop._decide_current_val_interval()
    if (loop.runner.val_loop is not None and step >= loop.val_begin
            and (step % loop.val_interval == 0 or step == max_steps)):
        loop.runner.val_loop.run()


def run_epoch_from(loop, first_batch_idx):
    """``EpochBasedTrainLoop.run_epoch`` of mmengine 0.10.7 whose ``batch_idx`` (handed to
    ``run_iter`` and the iteration hooks) starts at ``first_batch_idx``.

    An epoch resumed after its first ``first_batch_idx`` batches (skipped by the batch sampler)
    numbers its batches on from there, as the uninterrupted run did; the stock method numbers
    from 0 inside its ``enumerate``, and it ends by advancing the private ``_epoch``, which has
    no public setter.

    Args:
        loop (EpochBasedTrainLoop): the loop.
        first_batch_idx (int): the index of the epoch's first batch.
    """
    loop.runner.call_hook('before_train_epoch')
    loop.runner.model.train()
    for idx, data_batch in enumerate(loop.dataloader, start=first_batch_idx):
        loop.run_iter(idx, data_batch)
    loop.runner.call_hook('after_train_epoch')
    loop._epoch += 1


def run_iter_based_loop(loop, before_first_iter):
    """``IterBasedTrainLoop.run`` of mmengine 0.10.7 with ``before_first_iter()`` called after
    the ``before_train`` / ``before_train_epoch`` hooks, and without the stock resume skip.

    The stock ``run`` of a resumed loop (``_iter > 0``) first draws ``_iter`` batches from the
    dataloader and discards them: each is loaded and augmented, which is slow on real data and
    moves the random states the next batches draw from. That skip is inside ``run`` with no way
    to turn it off, so ``run`` is re-implemented without it; ``before_first_iter`` puts the
    index-only skip of :class:`~mmattn.engine.ResumableBatchSampler` in its place (after
    ``before_train_epoch``, whose ``DistSamplerSeedHook`` sets the sampler's epoch to 0). The
    body reads the private ``_iter`` / ``_max_iters`` and calls the private
    ``_decide_current_val_interval``, as the stock one does.

    Args:
        loop (IterBasedTrainLoop): the loop to run.
        before_first_iter (callable): called with no arguments.

    Returns:
        nn.Module: the trained model (``loop.runner.model``).
    """
    loop.runner.call_hook('before_train')
    loop.runner.call_hook('before_train_epoch')
    before_first_iter()
    while loop._iter < loop._max_iters and not loop.stop_training:
        loop.runner.model.train()
        data_batch = next(loop.dataloader_iterator)
        loop.run_iter(data_batch)
        _validate_if_due(loop, loop._iter, loop._max_iters)
    loop.runner.call_hook('after_train_epoch')
    loop.runner.call_hook('after_train')
    return loop.runner.model


def restart_infinite_iterator(loop, passes_done=None):
    """Give an ``IterBasedTrainLoop`` a new iterator over its dataloader (the private
    ``_InfiniteDataloaderIterator`` the stock loop uses), whose pass counter continues from
    ``passes_done``.

    The loop creates its iterator in ``__init__``, before ``Runner.resume`` has loaded the
    checkpoint: it is the iterator of a fresh run (with worker processes it has already
    prefetched the first batches of a pass from the start, in the sampler epoch of a fresh
    run). mmengine 0.10.7 has no public way to create or restart that iterator, nor to set its
    pass counter, the private ``_epoch`` it hands to ``sampler.set_epoch`` each time the
    dataloader is exhausted and restarted.

    Args:
        loop (IterBasedTrainLoop): the loop; its ``dataloader_iterator`` is replaced.
        passes_done (int, optional): the iterator's pass counter (the sampler epoch of the
            pass in progress). Defaults to None: counted from 0, as a new loop does.
    """
    loop.dataloader_iterator = _InfiniteDataloaderIterator(loop.dataloader)
    if passes_done is not None:
        loop.dataloader_iterator._epoch = passes_done


# --------------------------------------------------------------------------- CheckpointHook


class StepCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose writing of one checkpoint can be overridden by a public name,
    :meth:`save_step`.

    ``CheckpointHook`` of mmengine 0.10.7 writes every periodic and every best checkpoint
    through its private ``_save_checkpoint_with_step`` (called by ``_save_checkpoint`` and
    ``_save_best_checkpoint``): it removes the checkpoint beyond ``max_keep_ckpts`` before
    writing the new one in place. The public hooks around it (``before_save_checkpoint``) run
    inside ``Runner.save_checkpoint``, after that removal and with the file name fixed, so
    only overriding the private method changes how the file is written.
    """

    def _save_checkpoint_with_step(self, runner, step, meta):
        self.save_step(runner, step, meta)

    def save_step(self, runner, step, meta):
        """Write the checkpoint of ``step`` (mmengine's own write by default).

        Args:
            runner (Runner): the runner.
            step (int): the epoch or iteration the checkpoint is named after.
            meta (dict): the checkpoint's ``meta``.
        """
        super()._save_checkpoint_with_step(runner, step, meta)


def record_step_checkpoint(hook, runner, step, path):
    """What ``CheckpointHook._save_checkpoint_with_step`` of mmengine 0.10.7 records besides
    the file, for a checkpoint of ``step`` written to ``path``.

    ``hook.last_ckpt``, the message hub's ``last_ckpt`` and ``keep_ckpt_ids`` (which the stock
    ``before_train`` reads back on resume to go on removing old checkpoints) and the rotation of
    ``hook.keep_ckpt_ids`` are bookkeeping mmengine does inside the private method, with no
    public function to call for it.

    Args:
        hook (CheckpointHook): the hook that wrote the checkpoint.
        runner (Runner): the runner.
        step (int): the epoch or iteration the checkpoint is named after.
        path (str): where it was written.

    Returns:
        str | None: the checkpoint that fell out of ``max_keep_ckpts`` (path in the hook's
        ``out_dir``, not removed yet), None if none did.
    """
    hook.last_ckpt = path
    runner.message_hub.update_info('last_ckpt', path)
    if hook.max_keep_ckpts <= 0 or (hook.keep_ckpt_ids and hook.keep_ckpt_ids[-1] == step):
        return None  # a best and a periodic checkpoint of one step count once, as in mmengine
    outdated = None
    if len(hook.keep_ckpt_ids) == hook.max_keep_ckpts:
        outdated = hook.keep_ckpt_ids.popleft()
    hook.keep_ckpt_ids.append(step)
    runner.message_hub.update_info('keep_ckpt_ids', list(hook.keep_ckpt_ids))
    return osp.join(hook.out_dir, hook.filename_tmpl.format(outdated)) \
        if outdated is not None else None


# --------------------------------------------------------------------------- CheckpointLoader


def local_checkpoint_loader():
    """The function mmengine's ``CheckpointLoader`` loads local files with (its ``''`` scheme),
    or None.

    ``CheckpointLoader`` keeps its schemes in the private class dict ``_schemes``; mmengine
    0.10.7 can register a scheme but has no public lookup of the loader registered for one
    (``_get_checkpoint_loader`` is private too). The current loader is looked up rather than
    mmengine's ``load_from_local`` imported, so that a loader another package registered is
    wrapped, not dropped.
    """
    return CheckpointLoader._schemes.get('')


def replace_local_checkpoint_loader(loader):
    """Make ``loader`` mmengine's loader of local files (``CheckpointLoader``'s ``''`` scheme).

    ``register_scheme`` is public but refuses a prefix that is taken unless ``force=True``, and
    mmengine registers ``''`` itself: replacing it is the point here (``loader`` wraps
    :func:`local_checkpoint_loader`'s, it does not discard it).

    Args:
        loader (callable): ``loader(filename, map_location)`` -> the checkpoint.
    """
    CheckpointLoader.register_scheme(prefixes='', loader=loader, force=True)
