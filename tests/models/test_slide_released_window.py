"""Slide-Swin's released stage-3/4 setting written directly: ``window_size=56``.

The released slide_swin.py configures ``WINDOW_SIZE: 56``; its Swin block clamps a window
larger than the stage map to the map (14 and 7 at 224) and drops the shift. ``window_size=56``
(or one value per stage) must build exactly the model of the older spelling
``attn_mode='global', pretrain_img_size=224``: same tensors, same outputs at the classification
size and at odd detection sizes.
"""
import pytest
import torch

from mmattn.deploy.tiny import TINY_BACKBONES
from mmattn.models import SlideSwin

TINY = TINY_BACKBONES['SlideSwin']['arch']  # stage 3 has two blocks: the second would shift


def _pair(**new_kwargs):
    torch.manual_seed(0)
    old = SlideSwin(TINY, attn_mode='global', pretrain_img_size=224).eval()
    new = SlideSwin(TINY, **new_kwargs).eval()
    new.load_state_dict(old.state_dict(), strict=True)
    return old, new


@pytest.mark.parametrize('window_size', [56, [7, 7, 56, 56]])
def test_window_56_builds_the_released_model(window_size):
    old, new = _pair(window_size=window_size)
    assert new.window_sizes[2:] == old.window_sizes[2:] == [14, 7]
    assert new.window_shifts[2:] == old.window_shifts[2:] == [False, False]
    assert {k: v.shape for k, v in new.state_dict().items()} == \
        {k: v.shape for k, v in old.state_dict().items()}


@pytest.mark.parametrize('size', [(224, 224), (333, 517), (97, 131)])
def test_window_56_outputs_equal_the_global_spelling(size):
    old, new = _pair(window_size=56)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for a, b in zip(old(x), new(x)):
            assert torch.equal(a, b)


def test_window_no_larger_than_the_map_keeps_shifting():
    model = SlideSwin(TINY, window_size=[7, 7, 7, 5])
    assert model.window_sizes == [7, 7, 7, 5]
    assert model.window_shifts == [True] * 4  # 7 = the stage-4 map at 224: mmdet's behaviour


def test_window_is_clamped_to_the_map_at_pretrain_img_size():
    model = SlideSwin(TINY, window_size=12, pretrain_img_size=320)  # maps 80, 40, 20, 10
    assert model.window_sizes == [12, 12, 12, 10]
    assert model.window_shifts == [True, True, True, False]


@pytest.mark.parametrize('window_size', [[7, 7, 7], 0, [7, 7, 7, True], 7.0, '7'])
def test_bad_window_size(window_size):
    with pytest.raises(ValueError, match='window_size'):
        SlideSwin(TINY, window_size=window_size)
