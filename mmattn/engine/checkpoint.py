"""Atomic checkpoints, and resuming from the newest checkpoint that is intact.

mmengine's ``CheckpointHook`` writes ``epoch_N.pth`` in place and deletes the oldest kept
checkpoint before writing the new one: a full disk or a kill during the write leaves a truncated
``epoch_N.pth`` (possibly the only one left), and ``--resume`` then fails on it.
:class:`AtomicCheckpointHook` writes ``.epoch_N.pth.tmp`` in the same directory, ``os.replace``s
it to ``epoch_N.pth`` once complete, then rewrites ``last_checkpoint`` the same way, and only
then removes checkpoints beyond ``max_keep_ckpts``. A failed write removes the temporary file
and stops training with one line naming the directory.

:func:`find_resume_checkpoint` picks what ``--resume`` loads: the file ``last_checkpoint``
names if it is intact, otherwise the newest intact ``epoch_*.pth`` / ``iter_*.pth``, naming
every file it passed over and why. "Intact" is what
:func:`mmattn.converters.files.checkpoint_file_problem` checks (the zip CRC-32 of every
record); :func:`install_verified_local_loader` puts the same check in front of mmengine's local
loader, so a ``load_from`` / ``resume`` / ``init_cfg`` file read by any mmengine Runner (the
upstream mmdet / mmseg tools included, through the configs' ``custom_imports``) is verified
too.
"""
import copy
import glob
import os
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.fileio.backends import LocalBackend
from mmengine.registry import HOOKS

from mmattn.converters.files import check_checkpoint_file, checkpoint_file_problem

from .mmengine_internals import (StepCheckpointHook, local_checkpoint_loader,
                                 record_step_checkpoint, replace_local_checkpoint_loader)


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, no permission); one line."""


def _write_text_atomically(text, path):
    tmp = osp.join(osp.dirname(path), f'.{osp.basename(path)}.tmp')
    try:
        with open(tmp, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def _fsync(path):
    with open(path, 'rb') as f:
        os.fsync(f.fileno())


@HOOKS.register_module()
class AtomicCheckpointHook(StepCheckpointHook):
    """``CheckpointHook`` whose checkpoints are complete or absent (see module doc)."""

    def write(self, runner, ckpt_filename, meta, by_epoch):
        """Write ``ckpt_filename`` to the hook's ``out_dir`` atomically, then point
        ``last_checkpoint`` at it (nothing is deleted); the final path.

        Raises:
            CheckpointWriteError: the write failed (the temporary file is removed).
        """
        final = osp.join(self.out_dir, ckpt_filename)
        tmp_name = f'.{ckpt_filename}.tmp'
        tmp = osp.join(self.out_dir, tmp_name)
        try:
            runner.save_checkpoint(
                self.out_dir, tmp_name, self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta, by_epoch=by_epoch, backend_args=self.backend_args, **self.args)
            if is_main_process():
                _fsync(tmp)
                os.replace(tmp, final)
                _write_text_atomically(final, osp.join(runner.work_dir, 'last_checkpoint'))
        except OSError as exc:
            if is_main_process() and osp.exists(tmp):
                os.remove(tmp)
            reason = exc.strerror or str(exc)
            raise CheckpointWriteError(
                f'mmattn: cannot write checkpoint {ckpt_filename} to {osp.abspath(self.out_dir)}: '
                f'{reason} (the previous checkpoints are intact)') from exc
        return final

    def save_step(self, runner, step, meta):
        """Write the checkpoint of ``step`` atomically (local ``out_dir``; another backend:
        mmengine's write), then remove the one beyond ``max_keep_ckpts``.

        Args:
            runner (Runner): the runner.
            step (int): the epoch or iteration the checkpoint is named after.
            meta (dict): the checkpoint's ``meta``.
        """
        if not isinstance(self.file_backend, LocalBackend):
            return super().save_step(runner, step, meta)
        # The bookkeeping goes first, as in mmengine, so that the checkpoint's message hub
        # already holds its own step (a resumed run then rotates it out in its turn); the
        # outdated file is removed only once the new one is complete, and a failed write
        # leaves the bookkeeping as it was.
        hub = runner.message_hub
        before = dict(last_ckpt=self.last_ckpt,
                      keep_ckpt_ids=copy.copy(getattr(self, 'keep_ckpt_ids', None)))
        hub_before = {key: hub.get_info(key) for key in before}
        filename = self.filename_tmpl.format(step)
        old = record_step_checkpoint(self, runner, step, osp.join(self.out_dir, filename))
        try:
            final = self.write(runner, filename, meta, self.by_epoch)
        except BaseException:
            for key, value in before.items():
                if value is not None or key == 'last_ckpt':
                    setattr(self, key, value)
            for key, value in hub_before.items():
                hub.update_info(key, value) if value is not None else hub.pop_info(key)
            raise
        if old and old != final and is_main_process() and osp.isfile(old):
            os.remove(old)


def _checkpoints_newest_first(work_dir):
    files = glob.glob(osp.join(work_dir, 'epoch_*.pth')) + \
        glob.glob(osp.join(work_dir, 'iter_*.pth'))
    return sorted(files, key=lambda p: (osp.getmtime(p), p), reverse=True)


def find_resume_checkpoint(work_dir):
    """The checkpoint ``--resume`` should load from ``work_dir``.

    Returns:
        tuple: ``(path or None, note or None)``. ``path`` is None when the work dir holds no
        checkpoint (a fresh start). ``note`` is one line naming every unreadable checkpoint
        passed over (``last_checkpoint``'s and newer ones) with its damage.

    Raises:
        FileNotFoundError: checkpoints exist but none is intact (one line).
    """
    marker = osp.join(work_dir, 'last_checkpoint')
    named = None
    if osp.isfile(marker):
        with open(marker) as f:
            named = f.read().strip() or None
    candidates = ([named] if named else []) + _checkpoints_newest_first(work_dir)
    problems = []
    for path in dict.fromkeys(candidates):
        if any(osp.realpath(path) == osp.realpath(seen) for seen, _ in problems):
            continue  # last_checkpoint names it relative to another directory
        if not osp.isfile(path):
            problems.append((path, 'file not found'))
            continue
        problem = checkpoint_file_problem(path)
        if problem is None:
            note = None
            if problems:
                skipped = '; '.join(f'{bad} is unreadable ({why})' for bad, why in problems)
                note = f'mmattn: {skipped}; resuming from {path}'
            return path, note
        problems.append((path, problem))
    if problems:
        listed = '; '.join(f'{p}: {why}' for p, why in problems)
        raise FileNotFoundError(f'no intact checkpoint to resume from in {work_dir} ({listed}); '
                                'run without --resume to start over')
    return None, None


def install_verified_local_loader():
    """Put :func:`mmattn.converters.files.check_checkpoint_file` in front of mmengine's loader of
    local files (``CheckpointLoader``'s default scheme), which ``Runner.load_checkpoint``,
    ``Runner.resume`` and ``init_cfg=dict(type='Pretrained')`` call; idempotent. A damaged file
    then raises :class:`mmattn.converters.CheckpointFileError` (one line naming it) instead of
    loading changed tensors."""
    loader = local_checkpoint_loader()
    if loader is None or getattr(loader, '_mmattn_verified', False):
        return

    def load_from_local(filename, map_location):  # the name mmengine's log line shows
        local = osp.expanduser(filename)
        if osp.isfile(local):
            check_checkpoint_file(local)
        return loader(filename, map_location)

    load_from_local._mmattn_verified = True
    replace_local_checkpoint_loader(load_from_local)


def use_atomic_checkpoints(cfg):
    """``default_hooks.checkpoint`` of type ``CheckpointHook`` -> :class:`AtomicCheckpointHook`
    (same arguments), in place; returns whether it was switched."""
    hook = (cfg.get('default_hooks', None) or {}).get('checkpoint', None)
    if isinstance(hook, dict) and str(hook.get('type', '')).split('.')[-1] == 'CheckpointHook':
        hook['type'] = 'AtomicCheckpointHook'
        return True
    return False


install_verified_local_loader()
