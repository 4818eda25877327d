"""A training run that fails keeps its work: the last completed iteration is saved, resumable.

Lightning's ``OnExceptionCheckpoint`` saves a checkpoint when training raises; mmengine has no
such hook, and a run that fails at iteration N (an unreadable image, a full disk for logs,
Ctrl-C) loses everything since its last periodic checkpoint. :class:`ExceptionCheckpointHook`
keeps, at the end of every iteration and epoch, what a regular checkpoint written at that moment
holds besides the model and optimizer: the epoch / iteration counters, the exact-resume state of
:class:`~mmattn.engine.ExactResumeHook` (random states, position in the epoch) and a copy of the
model's buffers. ``tools/train.py`` calls :func:`save_on_exception` when ``runner.train()``
raises; it writes that state with the live weights, optimizer and schedulers, which have not
moved since:

* the error came while the next batch was loaded (a corrupt image) or in validation: weights,
  optimizer and schedulers are those of the last completed iteration, and the random states
  the batch's augmentation drew since are replaced by the kept ones;
* the error came inside the next iteration's step, before the optimizer stepped: the buffers
  the forward pass updated (BatchNorm statistics) are put back from the copy;
* after the optimizer stepped (an error in a later hook of that iteration) the weights are
  those of an iteration that did not complete, and nothing is written.

The file is the checkpoint the periodic hook would have written at that moment (``iter_N.pth``,
or ``epoch_N.pth`` when the epoch had just ended), written atomically, and ``last_checkpoint``
names it, so ``--resume`` continues exactly as from a regular checkpoint. In a distributed run
only rank 0 writes checkpoints, so only an error raised on rank 0 is saved.
"""
import logging
import os.path as osp
import re

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from .checkpoint import AtomicCheckpointHook
from .resume import META_KEY, _ResumeMixin

_IMAGE_ERRORS = re.compile(r'failed to load image|cannot identify image|image file is truncated|'
                           r'Premature end of JPEG|broken data stream|not a JPEG',
                           re.IGNORECASE)


@HOOKS.register_module()
class ExceptionCheckpointHook(Hook):
    """Keeps the state of the last completed iteration for :func:`save_on_exception`."""

    priority = 'LOWEST'  # after CheckpointHook (VERY_LOW): the moment a checkpoint is written

    def __init__(self):
        self._kept = None  # dict(meta, exact, buffers, by_epoch)
        self._phase = 'before the first iteration'
        self._stepped = False
        self._saving = None
        self._hooked = set()

    # ----------------------------------------------------------------- what is kept, when

    def before_train(self, runner):
        for optimizer in _optimizers(runner):
            if id(optimizer) not in self._hooked:
                self._hooked.add(id(optimizer))
                optimizer.register_step_post_hook(self._on_step)

    def _on_step(self, optimizer, args, kwargs):
        self._stepped = True

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self._phase, self._stepped = 'step', False

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._keep(runner, dict(epoch=runner.epoch, iter=runner.iter + 1), by_epoch=False)

    def after_train_epoch(self, runner):
        self._keep(runner, dict(epoch=runner.epoch + 1, iter=runner.iter), by_epoch=True)

    def before_val(self, runner):
        if self._phase != 'step':
            self._phase = 'validation'

    def after_val(self, runner):
        if self._phase == 'validation':
            self._phase = 'loading'

    def _keep(self, runner, meta, by_epoch):
        loop = runner.train_loop
        exact = loop.exact_resume_state(dict(meta)) if isinstance(loop, _ResumeMixin) else None
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        buffers = [b.detach().clone() for b in model.buffers()]
        self._kept = dict(meta=meta, exact=exact, buffers=buffers, by_epoch=by_epoch)
        self._phase, self._stepped = 'loading', False

    def before_save_checkpoint(self, runner, checkpoint):
        if self._saving is not None and self._saving['exact'] is not None:
            checkpoint['meta'][META_KEY] = self._saving['exact']  # not the state of the crash

    # ----------------------------------------------------------------- writing it

    def save(self, runner):
        """Write the kept state (see module doc).

        Returns:
            tuple: ``(path or None, note)``: the checkpoint holding the last completed
            iteration, and what was done, as a phrase.
        """
        kept = self._kept
        if kept is None:
            return None, 'no iteration completed in this run, nothing to save'
        done = kept['meta']['iter']
        if self._phase == 'step' and self._stepped:
            return None, (f'not saved: the error came after the optimizer step of iteration '
                          f'{done + 1}, whose weights are not those of a completed iteration')
        hook = next((h for h in runner.hooks if isinstance(h, AtomicCheckpointHook)), None)
        if hook is None or getattr(hook, 'out_dir', None) is None:
            return None, 'not saved: the run has no AtomicCheckpointHook (default_hooks.checkpoint)'
        name = f'epoch_{kept["meta"]["epoch"]}.pth' if kept['by_epoch'] else f'iter_{done}.pth'
        path = osp.join(hook.out_dir, name)
        if hook.last_ckpt == path and osp.isfile(path):
            return path, f'iteration {done} is in {path} (written before the error)'
        if self._phase == 'step':  # the forward pass moved the BatchNorm statistics
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            for buffer, value in zip(model.buffers(), kept['buffers']):
                buffer.data.copy_(value)
        self._saving = kept
        try:
            path = hook.write(runner, name, dict(kept['meta']), kept['by_epoch'])
        finally:
            self._saving = None
        return path, f'iteration {done} saved to {path}'

    def where(self):
        """Where the error came, as a phrase (``'loading the batch of iteration 5'``)."""
        done = self._kept['meta']['iter'] if self._kept else 0
        return {'step': f'in iteration {done + 1}',
                'validation': f'in the validation after iteration {done}',
                'loading': f'loading the batch of iteration {done + 1}'}.get(self._phase,
                                                                         self._phase)


def _optimizers(runner):
    wrapper = getattr(runner, 'optim_wrapper', None)
    wrappers = getattr(wrapper, 'optim_wrappers', None)
    wrappers = list(wrappers.values()) if isinstance(wrappers, dict) else [wrapper]
    return [w.optimizer for w in wrappers if getattr(w, 'optimizer', None) is not None]


def _batch_files(runner, message):
    """The image files of the batch being loaded, when the loader runs in this process and the
    error does not already name one (e.g. Pillow's "image file is truncated")."""
    try:
        loader = runner.train_dataloader
        sampler = getattr(loader, 'batch_sampler', None)
        batch = getattr(sampler, 'last_batch', None)
        if not batch or loader.num_workers:
            return []
        dataset = loader.dataset
        files = [dataset.get_data_info(i).get('img_path') for i in batch]
    except Exception:  # noqa: BLE001 - best effort: the message stands on its own
        return []
    files = [f for f in files if f]
    return [] if any(f in message for f in files) else files


def _log_to_files(runner, text):
    """``text`` into the run's log file(s) only (the console gets the traceback and the line
    from ``tools/train.py``)."""
    logger = getattr(runner, 'logger', None)
    record = logging.LogRecord(getattr(logger, 'name', 'mmengine'), logging.ERROR, __file__, 0,
                               text, None, None)
    for handler in getattr(logger, 'handlers', []):
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def save_on_exception(runner, exc, tool='train'):
    """Save the last completed iteration of a run whose ``train()`` raised ``exc`` and return
    the line to end the process with; None when nothing can be saved that the run's last
    checkpoint does not hold already (no :class:`ExceptionCheckpointHook`, no iteration
    completed in this run): the error then propagates unchanged. The traceback and the line
    also go to the run's log file."""
    import traceback
    hook = next((h for h in runner.hooks if isinstance(h, ExceptionCheckpointHook)), None)
    if hook is None or hook._kept is None:
        return None
    text = str(exc).strip().splitlines()
    error = f'{type(exc).__name__}: {text[-1]}' if text else type(exc).__name__
    where = hook.where()
    try:
        path, note = hook.save(runner)
    except Exception as save_exc:  # noqa: BLE001 - report both, keep the original error
        path, note = None, f'not saved: {save_exc}'
    files = _batch_files(runner, error) if where.startswith('loading') else []
    line = f'tools/{tool}.py: training stopped {where}: {error}'
    if files:
        line += f' (the batch of {", ".join(files)})'
    line += f'; {note}'
    if path:
        line += '; continue exactly from it with --resume once the cause is fixed'
    if _IMAGE_ERRORS.search(error) or files:
        line += '; --check-images decodes every image before training'
    _log_to_files(runner, ''.join(traceback.format_exception(exc)) + line)
    return line
