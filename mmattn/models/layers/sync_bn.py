"""Synchronised batch norm that works on CPU process groups (gloo).

torch's ``SyncBatchNorm`` raises in training on CPU tensors, so distributed runs without CUDA
would fall back to per-process statistics and a 2-process run would not train the same model as
one process with the same total batch. :class:`CPUSyncBatchNorm` computes the statistics over
every process with autograd-aware all-reduces (the gradient of the shared mean / variance flows
back to every rank, as in torch's CUDA kernel); without an initialised process group, or in
eval mode, it is plain ``BatchNorm``. ``mmattn.utils.cpu_dist`` puts it in place of ``SyncBN``
when a config runs distributed on CPU.
"""
import torch
import torch.distributed as dist
from mmengine.registry import MODELS
from torch import nn
from torch.distributed.nn.functional import all_reduce


def _distributed():
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@MODELS.register_module('CPUSyncBN')
class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm over the whole distributed batch (any device, any backend, incl. gloo).

    Two-pass statistics: the global mean first, then the global mean squared deviation, which
    stays accurate where ``E[x^2] - E[x]^2`` would cancel. Running statistics use the unbiased
    variance of the global batch, as ``torch.nn.SyncBatchNorm`` does.
    """

    def forward(self, x):
        if not (self.training and _distributed()):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [d for d in range(x.dim()) if d != 1]
        count = x.new_tensor([x.numel() / x.shape[1]])
        count = all_reduce(count)  # identical on every rank: no gradient needed
        mean = all_reduce(x.sum(dims)) / count
        shape = [1, -1] + [1] * (x.dim() - 2)
        centred = x - mean.view(shape)
        var = all_reduce(centred.pow(2).sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / self.num_batches_tracked.item()
                            if self.momentum is None else self.momentum)
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(unbiased.detach(), momentum)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f'CPUSyncBatchNorm expects an (N, C, ...) input, got {x.dim()}-D')

