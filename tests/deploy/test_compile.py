"""torch.compile of every backbone class: no graph break, compiled == eager at three sizes of one
bucket with H and W dynamic and at most one recompile;
and mmengine's ``compile`` option through a real Runner."""
import os.path as osp

import pytest
import torch
from torch._dynamo.utils import counters

from helpers import REPO_ROOT, ade_runner_options
from mmattn.deploy import TINY_BACKBONES, build_tiny_backbone

# Three sizes of one bucket (all > 64, none a multiple of another): the first compile marks H and
# W dynamic; at most one recompile after it (torch's own conv heuristics guard on the input numel).
SIZES = [(97, 131), (129, 161), (100, 140)]
RTOL = 1e-5


def _max_rel(outs, refs):
    assert len(outs) == len(refs)
    return max(((o - r).abs().max() / r.abs().max()).item() for o, r in zip(outs, refs))


def _compile_and_compare(name, backend):
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    model = build_tiny_backbone(name)
    compiled = torch.compile(model, backend=backend)
    worst = 0.
    for i, shape in enumerate(SIZES):
        x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(i))
        torch._dynamo.mark_dynamic(x, 2)
        torch._dynamo.mark_dynamic(x, 3)
        with torch.no_grad():
            worst = max(worst, _max_rel(compiled(x), model(x)))
    breaks = {reason: count for reason, count in counters['graph_break'].items()}
    return worst, counters['stats']['unique_graphs'], breaks


@pytest.mark.deploy
@pytest.mark.parametrize('name', sorted(TINY_BACKBONES))
def test_compiled_graph_matches_eager_across_sizes(name):
    """Dynamo + AOTAutograd, the graphs inductor receives, at three sizes of one bucket: no graph
    break (no data-dependent Python, ``.item()`` or syncing shape check in eval)."""
    worst, graphs, breaks = _compile_and_compare(name, 'aot_eager')
    assert not breaks
    assert worst <= RTOL
    assert 1 <= graphs <= 2  # the first compile + at most one recompile


@pytest.mark.deploy
def test_compiled_slide_swin_released_setting_is_one_graph():
    """Slide-Swin's released setting (global attention in stages 3-4: a window of the whole map
    at 224, clamped to the short side of smaller maps): no graph break, at most one recompile
    for the three sizes."""
    torch._dynamo.reset()
    counters.clear()
    model = build_tiny_backbone('SlideSwin', attn_mode='global')
    compiled = torch.compile(model, backend='aot_eager')
    for i, shape in enumerate(SIZES):
        x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(i))
        torch._dynamo.mark_dynamic(x, 2)
        torch._dynamo.mark_dynamic(x, 3)
        with torch.no_grad():
            assert _max_rel(compiled(x), model(x)) <= RTOL
    assert not counters['graph_break']
    assert 1 <= counters['stats']['unique_graphs'] <= 2


@pytest.mark.deploy
@pytest.mark.parametrize('name', sorted(TINY_BACKBONES))
def test_inductor_backbone_matches_eager_across_sizes(name):
    """Inductor's C++ kernels on CPU (minutes of g++ per backbone on 2 cores with a cold cache,
    hence the ``deploy`` marker: ``make test-deploy``)."""
    worst, graphs, breaks = _compile_and_compare(name, 'inductor')
    assert not breaks
    assert worst <= RTOL
    assert 1 <= graphs <= 2


@pytest.mark.slow
def test_runner_trains_one_iteration_with_compile_option(tmp_path, synthetic_data):
    """mmengine's ``compile`` config option (configs/demo/biformer_fpn_synthetic_compile.py)
    through a real Runner: one training iteration of the compiled model."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs/demo/biformer_fpn_synthetic_compile.py'))
    assert cfg.compile == dict(backend='inductor')
    for option in ade_runner_options(synthetic_data):
        key, value = option.split('=', 1)
        cfg.merge_from_dict({key: value if not value[:1].isdigit() else int(value)})
    cfg.compile = dict(backend='aot_eager')  # the same path without the C++ build
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1, val_interval=100)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100)
    cfg.work_dir = str(tmp_path)
    torch._dynamo.reset()
    counters.clear()
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert counters['stats']['unique_graphs'] >= 1  # dynamo compiled the model's forward
    assert runner.iter == 1
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert loss == loss and loss > 0
