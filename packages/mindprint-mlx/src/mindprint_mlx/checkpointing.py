"""Gradient checkpointing on MLX: ``mx.checkpoint`` around each decoder layer, as mlx-lm's ``grad_checkpoint`` does.

mlx-lm's helper replaces the layer *class*'s ``__call__`` for good; here the same wrapper is installed only
for the duration of a training run and the original ``__call__`` is put back afterwards. The layer's
activations are recomputed in the backward pass instead of kept: same numbers, less peak memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import mlx.core as mx
import mlx.nn as nn


@contextlib.contextmanager
def checkpointed_layers(module: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Within the block, every decoder layer of ``module`` (``module.layers``) runs under ``mx.checkpoint``."""
    if not enabled or not getattr(module, "layers", None):
        yield
        return
    classes = {type(layer) for layer in module.layers}
    originals = {cls: cls.__call__ for cls in classes}

    def wrap(fn: Any) -> Any:
        def checkpointed(layer: nn.Module, *args: Any, **kwargs: Any) -> Any:
            def inner(params: Any, *inner_args: Any, **inner_kwargs: Any) -> Any:
                layer.update(params)
                return fn(layer, *inner_args, **inner_kwargs)

            return mx.checkpoint(inner)(layer.trainable_parameters(), *args, **kwargs)

        return checkpointed

    try:
        for cls, fn in originals.items():
            cls.__call__ = wrap(fn)
        yield
    finally:
        for cls, fn in originals.items():
            cls.__call__ = fn
