"""What the analysis tools read of each op, one module per op file of :mod:`mmattn.ops`: the
other formulations the benchmark compares the fast path with (the official code's data
movement, unfold or dense forms), the benchmark cases (``bench_cases``) and the attention
pictures (``ATTENTION_PANELS``). Each op file names its module here in its
:func:`~mmattn.ops.registry.register_op` declaration; nothing in :mod:`mmattn.ops` imports
them."""
