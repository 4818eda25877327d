"""The checkpoint allow-list: mmengine checkpoints load under weights_only=True, nothing else."""
import io
import os
import pickle

import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

import mmattn  # noqa: F401  (installs the allow-list)


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.linear(torch.stack(inputs) if isinstance(inputs, list) else inputs)
        if mode == 'loss':
            return dict(loss=(out.squeeze(-1) - torch.stack(labels)).square().mean())
        return out


class ToyData(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(inputs=torch.tensor([i / 8., 1.]), labels=torch.tensor(i / 4.))


def _runner(work_dir, max_epochs, **kwargs):
    return Runner(
        model=ToyModel(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyData(), sampler=dict(type='DefaultSampler', shuffle=False),
                              batch_size=4, num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=[dict(type='LinearLR', start_factor=0.1, by_epoch=False, end=2),
                         dict(type='MultiStepLR', milestones=[1], by_epoch=True)],
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        default_scope='mmengine', experiment_name=f'toy{max_epochs}', **kwargs)


@pytest.mark.slow
def test_mmengine_checkpoint_save_and_resume(tmp_path):
    _runner(tmp_path, max_epochs=1).train()
    ckpt = tmp_path / 'epoch_1.pth'
    loaded = torch.load(ckpt, map_location='cpu')  # torch's default: weights_only=True
    assert isinstance(loaded['message_hub']['log_scalars']['train/loss'], HistoryBuffer)
    runner = _runner(tmp_path, max_epochs=2, resume=True, load_from=str(ckpt))
    runner.train()
    assert runner.epoch == 2 and runner.iter == 4  # continued from epoch 1, iteration 2
    assert (tmp_path / 'epoch_2.pth').exists()


class _Exploit:

    def __reduce__(self):
        return (os.system, ('echo pwned',))


def test_arbitrary_callable_is_still_refused():
    buffer = io.BytesIO()
    torch.save({'state_dict': {}, 'payload': _Exploit()}, buffer)
    buffer.seek(0)
    with pytest.raises(pickle.UnpicklingError, match='system'):
        torch.load(buffer, weights_only=True)


def test_getattr_stand_in_only_serves_history_buffer_statistics():
    class Sneaky:

        def __reduce__(self):
            return (getattr, (HistoryBuffer, '__init__'))

    buffer = io.BytesIO()
    torch.save({'x': Sneaky()}, buffer)
    buffer.seek(0)
    with pytest.raises(Exception, match='refusing getattr'):
        torch.load(buffer, weights_only=True)
    ok = io.BytesIO()
    torch.save({'fn': HistoryBuffer.mean}, ok)
    ok.seek(0)
    assert torch.load(ok, weights_only=True)['fn'] is HistoryBuffer.mean
