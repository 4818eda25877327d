"""``--launcher slurm`` on CPU: tools/slurm_train.sh / slurm_test.sh -> srun -> 2 tasks of
tools/train.py / tools/test.py (gloo, CPUSyncBN).

tests/slurm/srun and tests/slurm/scontrol stand in for Slurm's own on one machine: the tasks get
the variables a real srun sets (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODELIST,
SLURM_JOB_ID), so these tests run without a cluster. ``make test-slurm``
(tests/slurm/run_local.sh) runs the same scripts on a real one-node Slurm.

Each task loads ``rank_probe`` (written below into the test's folder): it saves the task's model
state and distributed environment after training, records every checkpoint file write with the
rank that made it, and makes the ranks' random streams part (each rank draws as many numbers per
iteration as its rank plus one).
"""
import json
import os
import os.path as osp
import random
import socket
import sys

import pytest
import torch
from helpers import REPO_ROOT, load_tool, read_scalars, run_tool, write_deterministic_seg_config
from test_resume import kill_at_first_checkpoint, newest_run_losses, write_seg_config

from mmattn.utils.slurm import PORT_BASE, PORT_SPAN, port_from_job_id, slurm_dist_env

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason='CPU (gloo) paths')

FAKE_SLURM = osp.join(REPO_ROOT, 'tests', 'slurm')
SRUN_VARS = dict(SLURM_PROCID='1', SLURM_NTASKS='2', SLURM_LOCALID='1',
                 SLURM_NODELIST='node[07-08]', SLURM_JOB_ID='123456')

RANK_PROBE = '''
import os
import random

import numpy as np
import torch
import torch.distributed as dist
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

_put = LocalBackend.put


def _recording_put(self, obj, filepath):
    rank = dist.get_rank() if dist.is_initialized() else -1
    with open(os.path.join(os.path.dirname(str(filepath)), f'writes_rank{rank}.txt'), 'a') as f:
        f.write(os.path.basename(str(filepath)) + '\\n')
    return _put(self, obj, filepath)


LocalBackend.put = _recording_put


@HOOKS.register_module()
class RankProbeHook(Hook):
    def before_train_iter(self, runner, batch_idx, data_batch=None):
        # as many draws as the rank: the ranks' random streams part, as with an augmentation
        # whose draws depend on the image
        for _ in range(runner.rank + 1):
            random.random(), np.random.rand(), torch.rand(1)

    def after_train(self, runner):
        model = getattr(runner.model, 'module', runner.model)
        env = {k: os.environ.get(k)
               for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')}
        params = {k: v.detach().clone() for k, v in model.named_parameters()}
        torch.save(dict(state=model.state_dict(), params=params, env=env,
                        backend=dist.get_backend()),
                   os.path.join(runner.work_dir, f'rank{runner.rank}.pt'))
'''


# ----------------------------------------------------------- the variables (no processes)


def test_srun_variables_become_torch_distributed_env(monkeypatch):
    monkeypatch.setenv('PATH', FAKE_SLURM + os.pathsep + os.environ['PATH'])
    env = slurm_dist_env(SRUN_VARS)
    assert env == dict(RANK='1', WORLD_SIZE='2', LOCAL_RANK='1', MASTER_ADDR='node07',
                       MASTER_PORT=str(20000 + 123456 % 10000))
    # MASTER_ADDR / MASTER_PORT already set are kept (a chosen interface, a chosen port)
    env = slurm_dist_env(dict(SRUN_VARS, MASTER_ADDR='10.0.0.5', MASTER_PORT='31000'))
    assert env['MASTER_ADDR'] == '10.0.0.5' and env['MASTER_PORT'] == '31000'


def test_two_jobs_on_one_node_get_different_ports():
    ports = {port_from_job_id(job) for job in range(4000, 4000 + PORT_SPAN)}
    assert len(ports) == PORT_SPAN and min(ports) == PORT_BASE
    assert max(ports) < 32768  # below Linux's ephemeral ports


@pytest.mark.parametrize('drop, named', [
    (('SLURM_PROCID', 'SLURM_NTASKS'), 'SLURM_PROCID, SLURM_NTASKS are not set'),
    (('SLURM_LOCALID', ), 'SLURM_LOCALID is not set'),
    (('SLURM_NODELIST', ), 'SLURM_NODELIST (or MASTER_ADDR) is not set'),
    (('SLURM_JOB_ID', ), 'SLURM_JOB_ID (or MASTER_PORT) is not set'),
])
def test_a_missing_variable_is_named_in_one_line(drop, named):
    environ = {k: v for k, v in SRUN_VARS.items() if k not in drop}
    with pytest.raises(RuntimeError, match=r'^' + named.replace('(', r'\(').replace(')', r'\)')
                       + ': start the processes with srun'):
        slurm_dist_env(environ)


def test_bad_values_and_no_scontrol_are_named(monkeypatch):
    with pytest.raises(RuntimeError, match=r"^SLURM_PROCID='x' is not an integer$"):
        slurm_dist_env(dict(SRUN_VARS, SLURM_PROCID='x'))
    with pytest.raises(RuntimeError, match=r'^SLURM_PROCID=2 is outside'):
        slurm_dist_env(dict(SRUN_VARS, SLURM_PROCID='2'))
    monkeypatch.setenv('PATH', '/nonexistent')
    with pytest.raises(RuntimeError, match=r'^MASTER_ADDR is not set and scontrol is not on '
                       r'PATH to resolve SLURM_NODELIST=node\[07-08\]$'):
        slurm_dist_env(SRUN_VARS)


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_tools_outside_srun_stop_with_one_line(tool, monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith('SLURM_') or name in ('MASTER_ADDR', 'MASTER_PORT'):
            monkeypatch.delenv(name)
    config = osp.join(REPO_ROOT, 'configs/demo/biformer_upernet_synthetic.py')
    args = [config] + (['missing.pth'] if tool == 'test' else []) + \
        ['--work-dir', str(tmp_path), '--launcher', 'slurm']
    with pytest.raises(SystemExit) as info:
        load_tool(tool).main(args)
    assert str(info.value) == (
        f'tools/{tool}.py: --launcher slurm: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, '
        'SLURM_NODELIST (or MASTER_ADDR), SLURM_JOB_ID (or MASTER_PORT) are not set: start the '
        'processes with srun (tools/slurm_train.sh, tools/slurm_test.sh) or use --launcher '
        'pytorch')


# ----------------------------------------------------------- 2 tasks through the scripts


def free_job_id():
    """A job id whose derived master port is free now."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(PORT_BASE, PORT_BASE + PORT_SPAN)
        with socket.socket() as sock:
            try:
                sock.bind(('127.0.0.1', port))
            except OSError:
                continue
        return 70 * PORT_SPAN + port - PORT_BASE
    raise RuntimeError('no free port in the master port range')


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """The environment of a job on one CPU node: the stand-in srun / scontrol first on PATH,
    GPUS=2 GPUS_PER_NODE=0 (no --gres) CPUS_PER_TASK=1, a job id, the probe importable.
    Returns the job id."""
    for name in list(os.environ):
        if name.startswith('SLURM_') or name in ('MASTER_ADDR', 'MASTER_PORT', 'RANK',
                                                 'WORLD_SIZE', 'LOCAL_RANK'):
            monkeypatch.delenv(name)
    (tmp_path / 'rank_probe.py').write_text(RANK_PROBE)
    job_id = free_job_id()
    monkeypatch.setenv('PATH', FAKE_SLURM + os.pathsep + os.environ['PATH'])
    monkeypatch.setenv('PYTHONPATH', str(tmp_path))
    monkeypatch.setenv('PYTHON', sys.executable)
    monkeypatch.setenv('SLURM_JOB_ID', str(job_id))
    monkeypatch.setenv('GPUS', '2')
    monkeypatch.setenv('GPUS_PER_NODE', '0')
    monkeypatch.setenv('CPUS_PER_TASK', '1')
    monkeypatch.setenv('FAKE_SRUN_LOG', str(tmp_path / 'srun.jsonl'))
    return job_id


def probed(config, tmp_path):
    """``config`` with the rank probe hook."""
    path = tmp_path / ('probed_' + osp.basename(config))
    path.write_text(f'_base_ = [{config!r}]\n'
                    "custom_imports = dict(imports=['mmattn', 'rank_probe'], "
                    'allow_failed_imports=False)\n'
                    "custom_hooks = [dict(type='RankProbeHook')]\n")
    return str(path)


def slurm_train(config, work_dir, *extra):
    return ['bash', osp.join(REPO_ROOT, 'tools/slurm_train.sh'), 'debug', 'mmattn-test', config,
            str(work_dir), *extra]


def rank_states(work_dir):
    return [torch.load(osp.join(work_dir, f'rank{r}.pt'), map_location='cpu') for r in (0, 1)]


def assert_same_state(a, b):
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def metric_lines(log, name):
    return [line for line in log.splitlines() if f'{name}:' in line]


@pytest.mark.slow
def test_slurm_train_two_tasks_then_slurm_test(synthetic_data, tmp_path, fake_slurm):
    """2 iterations of the demo UPerNet (every BN a SyncBN) in 2 srun tasks: the same parameters
    on both ranks, one checkpoint written by rank 0 alone; slurm_test.sh then evaluates it in 2
    tasks and reports the metric of both ranks' images once."""
    config = probed(write_deterministic_seg_config(tmp_path, synthetic_data, iters=2,
                                                   ckpt_every=2), tmp_path)
    work = tmp_path / 'work'
    log = run_tool(slurm_train(config, work), cwd=tmp_path)
    assert 'CPUSyncBN' in log

    srun = json.loads((tmp_path / 'srun.jsonl').read_text().splitlines()[0])
    assert (srun['partition'], srun['job_name'], srun['ntasks'], srun['cpus_per_task'],
            srun['kill_on_bad_exit']) == ('debug', 'mmattn-test', 2, 1, 1)
    assert srun['gres'] is None and srun['ntasks_per_node'] is None  # GPUS_PER_NODE=0
    assert srun['command'][-2:] == ['--launcher', 'slurm']
    assert f'--work-dir={work}' in srun['command']

    rank0, rank1 = rank_states(work)
    port = str(port_from_job_id(fake_slurm))
    for rank, probe in enumerate((rank0, rank1)):
        assert probe['backend'] == 'gloo'
        assert probe['env'] == dict(RANK=str(rank), WORLD_SIZE='2', LOCAL_RANK=str(rank),
                                    MASTER_ADDR='localhost', MASTER_PORT=port)
    assert_same_state(rank0['state'], rank1['state'])
    assert any('running_mean' in k for k in rank0['state'])  # SyncBN statistics included

    assert sorted(f for f in os.listdir(work) if f.endswith('.pth')) == ['iter_2.pth']
    assert (work / 'writes_rank0.txt').read_text().split() == ['.iter_2.pth.tmp']
    assert not [f for f in os.listdir(work) if f.startswith('writes_rank') and
                f != 'writes_rank0.txt']
    saved = torch.load(work / 'iter_2.pth', map_location='cpu')['state_dict']
    assert_same_state(saved, rank0['state'])
    assert sorted(read_scalars(work)) == [1, 2]

    # slurm_test.sh: the 2 validation images are split over the tasks; the metric is that of
    # one process over both images, reported once
    test_config = osp.join(REPO_ROOT, 'configs/demo/biformer_upernet_synthetic.py')
    options = ['--cfg-options',
               f'test_dataloader.dataset.data_root={osp.join(synthetic_data, "ade20k")}']
    log = run_tool(['bash', osp.join(REPO_ROOT, 'tools/slurm_test.sh'), 'debug', 'mmattn-test',
                    test_config, str(work / 'iter_2.pth'), '--work-dir',
                    str(tmp_path / 'test2')] + options, cwd=tmp_path)
    single = run_tool([sys.executable, osp.join(REPO_ROOT, 'tools/test.py'), test_config,
                       str(work / 'iter_2.pth'), '--work-dir', str(tmp_path / 'test1')] + options,
                      cwd=tmp_path)
    assert len(metric_lines(log, 'mIoU')) == 1
    got, expected = (metric_lines(text, 'mIoU')[0].split('mIoU:')[1].split()[0]
                     for text in (log, single))
    assert got == expected


@pytest.mark.slow
def test_slurm_job_killed_and_resumed_continues_exactly(synthetic_data, tmp_path, fake_slurm):
    """A 2-task job (the demo UPerNet with its random augmentation, shuffled sampler, 1 image per
    task: 2 iterations per pass) killed when its iteration-3 checkpoint is written, as a
    preempted job, and started again with --resume: iteration 4 logs the loss of the
    uninterrupted job, both ranks end with its parameters and rank 0 (whose state the
    checkpoints hold) with its whole state.

    Rank 1's running statistics of the non-synchronised BatchNorm layers are not compared:
    mmengine's DDP wrapper does not broadcast buffers, only rank 0's are saved, and a resumed
    rank 1 starts from rank 0's."""
    config = probed(write_seg_config(tmp_path, synthetic_data, iters=4, ckpt_every=3), tmp_path)
    options = ['--cfg-options', 'train_dataloader.batch_size=1', 'train_cfg.val_begin=100']
    whole, killed = tmp_path / 'whole', tmp_path / 'killed'
    run_tool(slurm_train(config, whole, *options), cwd=tmp_path)
    reference = newest_run_losses(str(whole))
    assert sorted(reference) == [1, 2, 3, 4]

    name = kill_at_first_checkpoint(slurm_train(config, killed, *options), str(killed), tmp_path)
    assert name == 'iter_3.pth'
    assert not (killed / 'rank0.pt').exists()  # killed before the end
    log = run_tool(slurm_train(config, killed, '--resume', *options), cwd=tmp_path)
    assert 'resumed epoch: 0, iter: 3' in log
    assert newest_run_losses(str(killed)) == {4: reference[4]}
    resumed, uninterrupted = rank_states(killed), rank_states(whole)
    assert_same_state(resumed[0]['state'], uninterrupted[0]['state'])
    assert_same_state(resumed[1]['params'], uninterrupted[1]['params'])
    # the checkpoint holds both ranks' random states (the probe made them differ)
    saved = torch.load(killed / 'iter_3.pth', map_location='cpu')['meta']['exact_resume']
    assert len(saved['rank_rng']) == 2
    assert not torch.equal(saved['rank_rng'][0]['torch'], saved['rank_rng'][1]['torch'])
