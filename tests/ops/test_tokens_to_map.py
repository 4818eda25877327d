"""tokens_to_map: the channels-last view of (B, H*W, C) tokens, and what it changes for convs."""
import pytest
import torch
import torch.nn.functional as F

from mmattn.ops.common import tokens_to_map


@pytest.mark.parametrize('b, h, w, c', [(1, 5, 7, 3), (2, 4, 4, 8), (3, 1, 6, 2)])
def test_same_values_as_transpose_reshape_without_a_copy(b, h, w, c):
    x = torch.randn(b, h * w, c)
    m = tokens_to_map(x, (h, w))
    assert torch.equal(m, x.transpose(1, 2).reshape(b, c, h, w))
    assert m.data_ptr() == x.data_ptr() and m.is_contiguous(memory_format=torch.channels_last)
    assert m.stride() == (h * w * c, 1, w * c, c)  # the batch stride too, also for b == 1


def test_a_batch_of_one_takes_the_kernels_of_larger_batches():
    """With ``transpose(1, 2).reshape`` (the official Dual-ViT / PVT formulation) a conv on a
    batch of one runs other kernels than on larger batches, so an image's float32 output
    depends on the batch around it. Through ``tokens_to_map`` a batch of one gives exactly its
    row of a batch of two, which is also what the official formulation gives for that batch."""
    torch.manual_seed(0)
    b, h, w, c = 2, 20, 30, 64
    x, weight, bias = torch.randn(b, h * w, c), torch.randn(c, 1, 3, 3), torch.randn(c)

    def conv(m):
        return F.conv2d(m, weight, bias, padding=1, groups=c)

    alone = conv(tokens_to_map(x[:1], (h, w)))
    batch = conv(tokens_to_map(x, (h, w)))
    assert torch.equal(alone, batch[:1])
    assert torch.equal(batch, conv(x.transpose(1, 2).reshape(b, c, h, w)))
