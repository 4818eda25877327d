# The CPU demo Semantic FPN trained with torch.compile: mmengine's `compile` option wraps the
# model's train_step in torch.compile (inductor; the optimizer step stays eager, see
# mmattn/compat.py). The crops are all 128x128, so one static graph; for inputs of varying size
# add dynamic=True (every mmattn backbone but Slide-Swin traces into one graph for any H, W).
# The first iterations are slow while inductor builds its C++ kernels (minutes on 2 CPU cores
# with a cold cache; the cache under /tmp/torchinductor_<user> makes later runs fast).
_base_ = ['./biformer_fpn_synthetic.py']
compile = dict(backend='inductor')
