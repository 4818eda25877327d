"""Runner hooks mmattn adds to distributed runs."""
import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class MeanLogVarsHook(Hook):
    """Log the losses averaged over all processes instead of rank 0's own.

    mmengine logs what rank 0's ``train_step`` returned, i.e. the loss of rank 0's images only
    (mmdet 2.x all-reduced them). This hook averages every logged value over the ranks before
    ``RuntimeInfoHook`` (priority VERY_HIGH) stores them, so the logged loss of N processes x B
    images is the loss of the N*B-image batch (exactly, for losses that are per-image means).
    Ratios such as accuracies become means of the per-rank values. One all-reduce per iteration.
    ``tools/train.py`` adds it whenever a launcher is used.
    """
    priority = 'HIGHEST'

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if not outputs or not (dist.is_available() and dist.is_initialized()):
            return
        world = dist.get_world_size()
        if world == 1:
            return
        keys = [k for k, v in outputs.items() if isinstance(v, (torch.Tensor, float, int))]
        values = torch.stack([torch.as_tensor(outputs[k], dtype=torch.float64).detach().cpu()
                              for k in keys])
        if dist.get_backend() == 'nccl':
            values = values.cuda()
        dist.all_reduce(values)
        for key, value in zip(keys, (values / world).tolist()):
            outputs[key] = value
