"""``--launcher slurm``: the variables srun gives each task -> torch.distributed's ``env://``.

Under Slurm there is no torchrun: ``srun`` starts every process of the job step itself and
describes it to the process with ``SLURM_PROCID`` (global rank), ``SLURM_NTASKS`` (world
size), ``SLURM_LOCALID`` (rank on its node), ``SLURM_NODELIST`` (the nodes, as a hostlist
expression such as ``node[03-04]``) and ``SLURM_JOB_ID``. :func:`setup_slurm_env` exports what
``torch.distributed`` reads from them, before the Runner is built:

* ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` from ``SLURM_PROCID``, ``SLURM_NTASKS``,
  ``SLURM_LOCALID``;
* ``MASTER_ADDR``: kept when already set (mmengine's slurm launcher does the same, so a user
  can name the interface to use), else the first host of
  ``scontrol show hostname $SLURM_NODELIST``;
* ``MASTER_PORT``: kept when already set, else ``20000 + SLURM_JOB_ID % 10000``. Every task of
  a job computes the same port without talking to the others, and two jobs sharing a node get
  different ports, where mmengine's fallback (29500 for every job) makes the second job on a
  node fail with "address already in use". The range 20000-29999 lies below Linux's ephemeral
  port range (32768-60999), so no outgoing connection holds the port.

A missing or malformed variable stops the tool with one line naming it.

With CUDA, mmengine's ``init_dist('slurm')`` (called by the Runner) then sets the device and
creates the NCCL group from these variables; without CUDA, :mod:`mmattn.utils.cpu_dist` creates
a gloo group from them instead (mmengine's slurm path calls ``torch.cuda.set_device``, which
raises on a CPU-only torch).
"""
import os
import shutil
import subprocess

PORT_BASE = 20000
PORT_SPAN = 10000
_RANK_VARS = ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_LOCALID')


def port_from_job_id(job_id):
    """The master port every task of job ``job_id`` uses when ``MASTER_PORT`` is unset."""
    return PORT_BASE + int(job_id) % PORT_SPAN


def first_host(nodelist):
    """The first host of a Slurm hostlist expression, from ``scontrol show hostname``.

    Raises:
        RuntimeError: scontrol is not on PATH or fails (one line).
    """
    scontrol = shutil.which('scontrol')
    if scontrol is None:
        raise RuntimeError(f'MASTER_ADDR is not set and scontrol is not on PATH to resolve '
                           f'SLURM_NODELIST={nodelist}')
    proc = subprocess.run([scontrol, 'show', 'hostname', nodelist], capture_output=True,
                          text=True, timeout=60)
    hosts = proc.stdout.split()
    if proc.returncode != 0 or not hosts:
        detail = (proc.stderr.strip().splitlines() or [f'exit status {proc.returncode}'])[0]
        raise RuntimeError(f'scontrol show hostname {nodelist} failed: {detail}')
    return hosts[0]


def slurm_dist_env(environ):
    """``{RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT}`` for the task ``environ``
    describes (see the module doc).

    Raises:
        RuntimeError: a variable is missing or not an integer (one line naming each).
    """
    missing = [name for name in _RANK_VARS if not environ.get(name)]
    if not environ.get('MASTER_ADDR') and not environ.get('SLURM_NODELIST'):
        missing.append('SLURM_NODELIST (or MASTER_ADDR)')
    job_id = environ.get('SLURM_JOB_ID') or environ.get('SLURM_JOBID')
    if not environ.get('MASTER_PORT') and not job_id:
        missing.append('SLURM_JOB_ID (or MASTER_PORT)')
    if missing:
        verb = 'is' if len(missing) == 1 else 'are'
        raise RuntimeError(f'{", ".join(missing)} {verb} not set: start the processes with srun '
                           '(tools/slurm_train.sh, tools/slurm_test.sh) or use --launcher pytorch')
    values = {}
    for name in _RANK_VARS + (('SLURM_JOB_ID', ) if not environ.get('MASTER_PORT') else ()):
        text = environ[name] if name != 'SLURM_JOB_ID' else job_id
        try:
            values[name] = int(text)
        except ValueError:
            raise RuntimeError(f'{name}={text!r} is not an integer') from None
    rank, world = values['SLURM_PROCID'], values['SLURM_NTASKS']
    if not 0 <= rank < world:
        raise RuntimeError(f'SLURM_PROCID={rank} is outside 0..SLURM_NTASKS-1 ({world - 1})')
    return dict(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(values['SLURM_LOCALID']),
        MASTER_ADDR=environ.get('MASTER_ADDR') or first_host(environ['SLURM_NODELIST']),
        MASTER_PORT=environ.get('MASTER_PORT') or str(port_from_job_id(values['SLURM_JOB_ID'])))


def setup_slurm_env(tool):
    """Export :func:`slurm_dist_env` into ``os.environ``; one line naming ``tools/<tool>.py``
    and the problem when it cannot."""
    try:
        os.environ.update(slurm_dist_env(os.environ))
    except RuntimeError as exc:
        raise SystemExit(f'tools/{tool}.py: --launcher slurm: {exc}') from None
