"""Every mlx-lm internal mindprint-mlx relies on, verified on the :data:`TESTED` range and nowhere else.

Private names, and why they are used:

* ``mlx_lm.utils._get_classes(config)``: mlx-lm's own choice of the model module (and so of the
  ``ModelArgs`` class) for a config, remappings included. ``loading.check_supported`` reads the fields
  that class accepts, to refuse configs whose maths mlx-lm would silently drop. Without it the same
  lookup is done through the public ``mlx_lm.models.<type>`` modules and ``MODEL_REMAPPING``
  (:func:`model_args_class`).
* ``TokenizerWrapper._tokenizer``: the Hugging Face tokenizer mlx-lm wraps. The data layer encodes
  through it directly, as mindprint-torch does, so both backends produce the same ids (the wrapper's
  own ``apply_chat_template`` adds thinking arguments). Without it the wrapper itself is used; it
  forwards attribute access to the tokenizer it holds (:func:`hf_tokenizer`).

Not private, but a call layout the sliding-window mask depends on: ``loading.apply_windows`` gives a sliding
layer's attention a subclass whose ``__call__(x, mask, cache)`` narrows the mask to the window (mlx-lm drops the
window for these families) and reads ``cache.offset``. :func:`attention_call_problem` checks that layout on the
attention class before the swap; a model whose attention is called otherwise is refused (key ``sliding_window``),
never trained without its window.

Not private, but a layout the lean forward and its prefix cache depend on (``module.model`` with
``layers``, ``lm_head`` or tied ``embed_tokens.as_linear``, ``mlx_lm.models.cache.KVCache``): that is
checked numerically per model by ``lean_forward.supports_lean_forward``, not here.
"""

from __future__ import annotations

import importlib
from typing import Any

from mindprint_interfaces.compat import FastPath, Tested, fast_path

TESTED = Tested("mlx-lm", "0.32", "0.33")

GET_CLASSES = "_get_classes"
WRAPPED_TOKENIZER = "_tokenizer"

MODEL_LOOKUP = "mlx_lm.model_lookup"
HF_TOKENIZER = "mlx_lm.hf_tokenizer"

_declined: dict[str, str] = {}


def _get_classes_problem() -> str | None:
    import mlx_lm.utils

    if not callable(getattr(mlx_lm.utils, GET_CLASSES, None)):
        return f"mlx_lm.utils.{GET_CLASSES} is gone: the model module is found through mlx_lm.models instead"
    return None


def _public_model_args_class(config: dict[str, Any]) -> Any:
    """``_get_classes``' lookup through public names: remap the model type, import ``mlx_lm.models.<type>``."""
    import mlx_lm.utils

    model_type = config["model_type"]
    architectures = config.get("architectures") or ()
    if isinstance(architectures, str):
        architectures = (architectures,)
    by_architecture = getattr(mlx_lm.utils, "MODEL_ARCHITECTURE_REMAPPING", {})
    remapped = next((by_architecture[(model_type, a)] for a in architectures if (model_type, a) in by_architecture),
                    None)
    model_type = remapped or getattr(mlx_lm.utils, "MODEL_REMAPPING", {}).get(model_type, model_type)
    try:
        module = importlib.import_module(f"mlx_lm.models.{model_type}")
    except ImportError as exc:
        raise ValueError(f"Model type {model_type} not supported.") from exc
    return module.ModelArgs


def model_args_class(config: dict[str, Any]) -> Any:
    """The ``ModelArgs`` class mlx-lm builds for ``config``; ValueError when mlx-lm has no such model type."""
    get_classes = getattr(importlib.import_module("mlx_lm.utils"), GET_CLASSES, None)
    if callable(get_classes):
        return get_classes(config=config)[1]
    _declined[MODEL_LOOKUP] = _get_classes_problem() or f"mlx_lm.utils.{GET_CLASSES} is not callable"
    return _public_model_args_class(config)


ATTENTION_CALL = ("x", "mask", "cache")


def attention_call_problem(cls: type) -> str | None:
    """Why the window mask cannot wrap ``cls.__call__`` (it must take ``(x, mask, cache)`` in that order), or None."""
    import inspect

    try:
        names = tuple(inspect.signature(cls.__call__).parameters)[1:]
    except (TypeError, ValueError):
        return f"{cls.__module__}.{cls.__qualname__}.__call__ has no signature to check"
    if names[:len(ATTENTION_CALL)] != ATTENTION_CALL:
        return (f"{cls.__module__}.{cls.__qualname__}.__call__ takes ({', '.join(names)}), not "
                f"({', '.join(ATTENTION_CALL)}): the sliding-window mask cannot be applied")
    return None


def hf_tokenizer(wrapper: Any) -> Any:
    """The Hugging Face tokenizer inside mlx-lm's ``TokenizerWrapper`` (the wrapper itself when it holds none)."""
    # vars(), not getattr(): the wrapper's __getattr__ reads this very attribute, so a missing one would recurse
    inner = vars(wrapper).get(WRAPPED_TOKENIZER)
    if inner is not None:
        return inner
    _declined[HF_TOKENIZER] = (f"{type(wrapper).__name__} has no {WRAPPED_TOKENIZER}: encoding goes through the "
                               "wrapper's forwarding")
    return wrapper


def _wrapper_problem() -> str | None:
    import inspect

    from mlx_lm.tokenizer_utils import TokenizerWrapper

    try:
        source = inspect.getsource(TokenizerWrapper.__init__)
    except (OSError, TypeError):
        return "mlx-lm's TokenizerWrapper source is not available to check"
    if f"self.{WRAPPED_TOKENIZER} = " not in source:
        return f"TokenizerWrapper no longer stores the tokenizer as {WRAPPED_TOKENIZER}"
    return None


def fast_paths() -> list[FastPath]:
    """Which mlx-lm reach-ins this installation supports, and why not where it does not."""
    from mindprint_interfaces import BackendNotFoundError

    from .._imports import require_mlx

    try:
        require_mlx()  # the BLAS preload before mlx.core, as everywhere in this backend
    except BackendNotFoundError as exc:
        return [fast_path(name, str(exc)) for name in (MODEL_LOOKUP, HF_TOKENIZER)]
    checks = ((MODEL_LOOKUP, _get_classes_problem()), (HF_TOKENIZER, _wrapper_problem()))
    return [fast_path(name, problem or _declined.get(name)) for name, problem in checks]


def forget_declines() -> None:
    """Clear the run-time declines recorded so far (tests start from a clean record)."""
    _declined.clear()
