"""The command-line flags tools/train.py and tools/test.py share with upstream mmdet / mmseg."""
import importlib.util
import os
import os.path as osp
from contextlib import contextmanager

from mmengine.config import DictAction

from mmattn.utils.tool_setup import registry_error_or_none


def add_common_args(parser) -> None:
    """``--cfg-options``, ``--launcher`` and torchrun's ``--local-rank`` (torch >= 2.0) /
    ``--local_rank`` with the upstream tools' meaning, and mmattn's ``--skip-data-check``."""
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
    """``main(argv)``, then the default process group destroyed (if one was created): a torchrun
    worker of tools/test.py that left it to interpreter teardown aborted once in this project's
    tests after its work was done ("terminate called without an active exception", exit -6),
    which fails the whole launch."""
    try:
        main(argv)
    finally:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def load_tool(name: str, tools_dir: str):
    """``tools_dir/<name>.py`` imported as a module: tools/ is a folder of scripts, not a
    package, so one tool reuses another's functions this way instead of through sys.path."""
    path = osp.join(tools_dir, f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'mmattn_tools.{name.replace("/", ".")}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
