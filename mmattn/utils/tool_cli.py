"""The command-line flags tools/train.py and tools/test.py share with upstream mmdet / mmseg."""
import atexit
import importlib.util
import os
import os.path as osp
import sys
from contextlib import contextmanager

from mmengine.config import DictAction

from mmattn.utils.tool_setup import registry_error_or_none


def add_common_args(parser) -> None:
    """``--cfg-options``, ``--launcher`` and torchrun's ``--local-rank`` (torch >= 2.0) /
    ``--local_rank`` with the upstream tools' meaning, and mmattn's ``--skip-data-check`` and
    ``--check-images``."""
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override some settings in the used config, the key-value pair in xxx=yyy format '
        'will be merged into config file. If the value to be overwritten is a list, it should be '
        'like key="[a,b]" or key=a,b. It also allows nested list/tuple values, e.g. '
        'key="[(a,b),(c,d)]". Note that the quotation marks are necessary and that no white '
        'space is allowed.')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument(
        '--skip-data-check', action='store_true',
        help='skip the dataset content check before the run (annotations, image and '
        'segmentation files); the dataset paths are still checked')
    parser.add_argument(
        '--check-images', action='store_true',
        help='decode every image of the dataset before the run, as LoadImageFromFile does '
        '(worker processes, progress line), and stop naming the files that fail')


def parse_tool_args(parser, argv=None):
    """``parser.parse_args(argv)``, exporting ``LOCAL_RANK`` when torchrun did not."""
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


@contextmanager
def exit_on_registry_error(tool: str):
    """Turn the KeyError of an unknown registry type into a one-line exit naming ``tool``
    (``tools/<tool>.py``); every other KeyError propagates."""
    try:
        yield
    except KeyError as exc:
        message = registry_error_or_none(exc)
        if message is None:
            raise
        raise SystemExit(f'tools/{tool}.py: {message}') from None


def run_and_close(main, argv) -> None:
    """``main(argv)``; in a distributed run, the default process group destroyed and, after a
    successful ``main``, the process ended without interpreter teardown.

    A torchrun worker that finished its work could still abort at exit ("terminate called
    without an active exception", exit -6), which fails the whole launch: this project's tests
    saw it for about one run in four of tools/dist_train.sh on 2 CPU processes. A core dump
    shows the cause: a gloo worker thread of the process group (still referenced by the DDP
    wrapper, so ``destroy_process_group`` does not join it) drops the last reference to a
    finished collective whose tensors still own Python objects; freeing them needs the GIL, and
    a thread that asks for the GIL while Python is finalizing is unwound, which C++ turns into
    ``std::terminate`` (pytorch/pytorch#179291, an abandoned upstream fix, describes the same
    crash). So after a
    successful distributed ``main`` the exit handlers run while the interpreter is still whole
    (log files flushed and closed, DataLoader workers joined), then ``os._exit(0)`` ends the
    process without finalization. Every file the run writes (checkpoints, logs, visualizer
    backends, ``--out``) is closed inside ``main``; failures keep Python's normal exit."""
    import torch.distributed as dist
    distributed = False
    try:
        main(argv)
    finally:
        if dist.is_available() and dist.is_initialized():
            distributed = True
            dist.destroy_process_group()
    if distributed:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def load_tool(name: str, tools_dir: str):
    """``tools_dir/<name>.py`` imported as a module: tools/ is a folder of scripts, not a
    package, so one tool reuses another's functions this way instead of through sys.path."""
    path = osp.join(tools_dir, f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'mmattn_tools.{name.replace("/", ".")}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
