"""Distributed training on CPU (gloo): synchronised BN, and N processes x B images == 1 x N*B.

The end-to-end test runs the real entry points (tools/dist_train.sh -> torchrun -> tools/train.py)
on the synthetic ADE20K set with a deterministic config (fixed-size resize, no flip / photometric
/ dropout / drop path, unshuffled sampler) in which every BN is SyncBN.
"""
import os.path as osp
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import (REPO_ROOT, free_port, read_scalars, run_tool,
                      write_deterministic_seg_config)

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason='CPU (gloo) paths')


def _sync_bn_worker(rank, world, port, out):
    from mmattn.models.layers import CPUSyncBatchNorm

    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=world)
    gen = torch.Generator().manual_seed(0)
    x_full = torch.randn(6, 3, 5, 7, generator=gen, dtype=torch.float64) * 3 + 1
    w_full = torch.randn(6, 3, 5, 7, generator=gen, dtype=torch.float64)
    part = slice(rank * 6 // world, (rank + 1) * 6 // world)
    bn = CPUSyncBatchNorm(3, momentum=0.3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    x = x_full[part].clone().requires_grad_()
    out_local = bn(x)
    (out_local * w_full[part]).sum().backward()
    grads = torch.cat([bn.weight.grad, bn.bias.grad])
    dist.all_reduce(grads)  # what DDP does (up to its 1/world averaging)
    pieces = [torch.empty_like(out_local) for _ in range(world)]
    dist.all_gather(pieces, out_local.detach())
    x_grads = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(x_grads, x.grad)
    if rank == 0:
        torch.save(dict(out=torch.cat(pieces), x_grad=torch.cat(x_grads), grads=grads,
                        running_mean=bn.running_mean, running_var=bn.running_var), out)
    dist.destroy_process_group()


@pytest.mark.slow
def test_cpu_sync_bn_equals_batch_norm_on_the_whole_batch(tmp_path):
    """2 processes x 3 samples == one BatchNorm2d over 6: outputs, input/affine grads, stats."""
    out = str(tmp_path / 'rank0.pt')
    mp.spawn(_sync_bn_worker, args=(2, free_port(), out), nprocs=2, join=True)
    got = torch.load(out)

    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(6, 3, 5, 7, generator=gen, dtype=torch.float64) * 3 + 1).requires_grad_()
    w = torch.randn(6, 3, 5, 7, generator=gen, dtype=torch.float64)
    bn = torch.nn.BatchNorm2d(3, momentum=0.3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    ref = bn(x)
    (ref * w).sum().backward()
    torch.testing.assert_close(got['out'], ref.detach())
    torch.testing.assert_close(got['x_grad'], x.grad)
    torch.testing.assert_close(got['grads'], torch.cat([bn.weight.grad, bn.bias.grad]))
    torch.testing.assert_close(got['running_mean'], bn.running_mean)
    torch.testing.assert_close(got['running_var'], bn.running_var)


def test_cpu_sync_bn_without_process_group_is_batch_norm():
    from mmattn.models.layers import CPUSyncBatchNorm
    x = torch.randn(4, 3, 6, 5)
    sync, plain = CPUSyncBatchNorm(3), torch.nn.BatchNorm2d(3)
    torch.testing.assert_close(sync(x), plain(x))
    torch.testing.assert_close(sync.running_var, plain.running_var)


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_whole_batch(synthetic_data, tmp_path):
    """dist_train.sh 2 x 1 image == train.py 1 x 2 images: loss, lr, SyncBN stats, weights."""
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint

    import mmattn  # noqa: F401
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    config = write_deterministic_seg_config(tmp_path, synthetic_data)
    single, double = tmp_path / 'one_process', tmp_path / 'two_processes'
    run_tool([sys.executable, osp.join(REPO_ROOT, 'tools/train.py'), config,
              '--work-dir', str(single)], cwd=tmp_path)
    log = run_tool(['bash', osp.join(REPO_ROOT, 'tools/dist_train.sh'), config, '2',
                    '--work-dir', str(double), '--cfg-options', 'train_dataloader.batch_size=1'],
                   cwd=tmp_path, env=dict(PORT=str(free_port())))
    assert 'CPUSyncBN' in log  # the SyncBN configs were honoured, not dropped

    one, two = read_scalars(single), read_scalars(double)
    assert sorted(one) == sorted(two) == [1, 2, 3]
    for it in one:
        assert one[it]['lr'] == pytest.approx(two[it]['lr'], rel=1e-9)
        # logged loss of 2 ranks = their mean (MeanLogVarsHook) = the 2-image loss
        assert one[it]['loss'] == pytest.approx(two[it]['loss'], rel=2e-4), it
    assert len({round(r['loss'], 4) for r in one.values()}) == 3  # the steps differ: real data

    # rank 0's checkpoint loads strictly into a fresh model and holds the 1-process weights,
    # including the synchronised BN running statistics of backbone and heads
    register_all_modules()
    cfg = Config.fromfile(config)
    model = MODELS.build(cfg.model)
    load_checkpoint(model, str(double / 'iter_3.pth'), strict=True)
    reference = torch.load(single / 'iter_3.pth', map_location='cpu')['state_dict']
    state = model.state_dict()
    assert set(state) == set(reference)
    stats = [k for k in state if k.endswith('running_mean')]
    assert any(k.startswith('backbone.') for k in stats) and any('decode_head' in k for k in stats)
    for key, value in reference.items():
        torch.testing.assert_close(state[key], value, rtol=1e-3, atol=1e-4, msg=key)

    # and dist_test.sh evaluates it with 2 processes (IoUMetric gathers both ranks' results)
    ade = osp.join(synthetic_data, 'ade20k')
    log = run_tool(['bash', osp.join(REPO_ROOT, 'tools/dist_test.sh'),
                    osp.join(REPO_ROOT, 'configs/demo/biformer_upernet_synthetic.py'),
                    str(double / 'iter_3.pth'), '2', '--work-dir', str(tmp_path / 'test'),
                    '--cfg-options', f'test_dataloader.dataset.data_root={ade}'],
                   cwd=tmp_path, env=dict(PORT=str(free_port())))
    assert 'mIoU' in log
