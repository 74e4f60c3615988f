"""Every TRL internal mindprint-torch relies on, verified on the :data:`TESTED` range and nowhere else.

Private names, and why they are used:

* ``trl.trainer.utils.add_fused_lm_head``: the forward it patches onto a model is a nested function
  ``_fused_forward`` closing over ``original_forward``, ``text_config``, ``final_logit_softcapping``,
  ``logit_scale``, ``backbone_attr``, ``cast_lm_head_to_fp32``, ``temperature`` and ``outputs``. The
  compact LM head (``mindprint_torch.compact_head``) reads those closure variables by name so that it
  runs TRL's fused head with exactly TRL's settings (:func:`fused_forward_settings`).
* ``trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE``: the vocabulary tile of TRL's fused head; the compact
  head passes the same one, so its values are TRL's (:func:`fused_head`).
* ``DPOTrainer._prepare_dataset`` (overridden by :class:`DPOTrainerHooks`): TRL re-tokenizes there; ours
  passes the data layer's tokens through and, for ``reference="base"``, drops TRL's ``"ref"`` adapter
  copy. Required, not a fast path: without it DPO cannot train on pre-tokenized data, so a TRL without it
  is refused with a clear error (:func:`require_dpo_dataset_hook`).
* ``DPOTrainer._precompute_ref_logps`` (overridden by :class:`DPOTrainerHooks`): the reference log-probs
  are computed in memory and through the compact head, instead of into a ``datasets`` cache file named per
  process. Without it TRL's own precompute runs.

* ``trl.experimental.orpo`` / ``trl.experimental.cpo`` (``ORPOTrainer``, ``CPOTrainer`` and their configs):
  TRL 1.16 keeps these trainers in its experimental namespace, which may change in any release. Their
  ``tokenize_row(feature, model=None)`` (overridden by :class:`RowTokenizerHooks`) re-tokenizes prompt and
  completions; ours returns the data layer's tokens in TRL's column layout. Required: a TRL without them
  is refused with a clear error (:func:`experimental_trainer`).
* ``KTOTrainer._prepare_dataset`` (overridden by :class:`KTOTrainerHooks`): as for DPO, TRL re-tokenizes
  (and unpairs, and builds the KL completions) there; ours passes the data layer's records through with
  the KL completions built as TRL builds them. Required (:func:`require_kto_dataset_hook`).

Used alongside, public but undocumented parts of the same head: ``trl.kernels.ChunkedLogProbFunction``,
``trl.trainer.utils.FusedCausalLMOutput`` and ``maybe_gather_lm_head_ctx``.

When a name is missing or looks different, the accessors return None (or TRL's own path runs) and
:func:`fast_paths` says which fast path is off and why.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from mindprint_interfaces import MindprintError
from mindprint_interfaces.compat import FastPath, Tested, fast_path, method_signature_problem

TESTED = Tested("trl", "1.16", "1.17")

FUSED_FORWARD = "_fused_forward"  # co_name of the forward add_fused_lm_head patches onto the model
FUSED_SETTINGS = ("original_forward", "text_config", "final_logit_softcapping", "logit_scale", "backbone_attr",
                  "cast_lm_head_to_fp32", "temperature", "outputs")
CHUNK_SIZE = "_CHUNKED_LOGPROB_CHUNK_SIZE"
DATASET_HOOK = "_prepare_dataset"
PRECOMPUTE_HOOK = "_precompute_ref_logps"
DATASET_HOOK_PARAMS = ("dataset", "processing_class", "args", "dataset_name")
PRECOMPUTE_HOOK_PARAMS = ("dataset", "name", "batch_size")

COMPACT_HEAD = "trl.compact_head"
DPO_DATASET = "trl.dpo_pretokenized_dataset"
DPO_PRECOMPUTE = "trl.dpo_precompute_in_memory"
ORPO_TRAINER = "trl.experimental_orpo"
CPO_TRAINER = "trl.experimental_cpo"
KTO_DATASET = "trl.kto_pretokenized_dataset"
TOKENIZE_ROW_PARAMS = ("feature", "model")
EXPERIMENTAL = {"orpo": ("ORPOTrainer", "ORPOConfig"), "cpo": ("CPOTrainer", "CPOConfig")}

_declined: dict[str, str] = {}  # fast paths whose names were there but did not fit at run time


@dataclass(frozen=True)
class FusedHead:
    """TRL's fused LM head parts the compact head calls."""

    function: Any  # trl.kernels.ChunkedLogProbFunction
    output: Any  # trl.trainer.utils.FusedCausalLMOutput
    gather_context: Any  # trl.trainer.utils.maybe_gather_lm_head_ctx
    chunk_size: int


def _fused_head_problem() -> str | None:
    try:
        import trl.kernels
        import trl.trainer.utils as utils
    except ImportError as exc:
        return f"trl not importable: {exc}"
    missing = [name for module, name in ((trl.kernels, "ChunkedLogProbFunction"), (utils, "FusedCausalLMOutput"),
                                         (utils, "maybe_gather_lm_head_ctx"), (utils, CHUNK_SIZE),
                                         (utils, "add_fused_lm_head")) if not hasattr(module, name)]
    if missing:
        return f"TRL no longer has {', '.join(missing)}"
    if not isinstance(getattr(utils, CHUNK_SIZE), int):
        return f"trl.trainer.utils.{CHUNK_SIZE} is not an int"
    nested = {c.co_name: c for c in utils.add_fused_lm_head.__code__.co_consts if inspect.iscode(c)}
    if FUSED_FORWARD not in nested:
        return f"add_fused_lm_head no longer patches a {FUSED_FORWARD} forward (found {sorted(nested) or 'none'})"
    absent = [name for name in FUSED_SETTINGS if name not in nested[FUSED_FORWARD].co_freevars]
    if absent:
        return f"TRL's {FUSED_FORWARD} no longer closes over {', '.join(absent)}"
    return None


def fused_head() -> FusedHead | None:
    """TRL's fused-head parts, or None when this TRL does not have them (the caller keeps TRL's forward)."""
    if _fused_head_problem() is not None:
        return None
    import trl.kernels
    import trl.trainer.utils as utils

    return FusedHead(function=trl.kernels.ChunkedLogProbFunction, output=utils.FusedCausalLMOutput,
                     gather_context=utils.maybe_gather_lm_head_ctx, chunk_size=int(getattr(utils, CHUNK_SIZE)))


def fused_forward_settings(forward: Any) -> dict[str, Any] | None:
    """The settings TRL's patched ``forward`` (a bound method) closes over, or None when it is not TRL's
    fused forward of the tested shape (a forward TRL did not patch, or a TRL whose patch looks different)."""
    func = getattr(forward, "__func__", None)
    if func is None:
        return None
    name = getattr(getattr(func, "__code__", None), "co_name", "")
    if name != FUSED_FORWARD:
        _declined[COMPACT_HEAD] = f"the model's patched forward is {name or '?'}, not TRL's {FUSED_FORWARD}"
        return None
    nonlocals = inspect.getclosurevars(func).nonlocals
    absent = [n for n in FUSED_SETTINGS if n not in nonlocals]
    if absent:
        _declined[COMPACT_HEAD] = f"TRL's {FUSED_FORWARD} does not close over {', '.join(absent)}"
        return None
    return {n: nonlocals[n] for n in FUSED_SETTINGS}


def _hook_problem(name: str, params: tuple[str, ...], trainer: str = "dpo") -> str | None:
    try:
        if trainer == "kto":
            from trl.trainer.kto_trainer import KTOTrainer as cls
        else:
            from trl.trainer.dpo_trainer import DPOTrainer as cls  # type: ignore[assignment]
    except ImportError as exc:
        return f"trl not importable: {exc}"
    return method_signature_problem(cls, name, params)


def _experimental_problem(method: str) -> str | None:
    import importlib
    import os
    import warnings

    trainer_name, config_name = EXPERIMENTAL[method]
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # mindprint records the reach-in here instead
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module(f"trl.experimental.{method}")
    except ImportError as exc:
        return f"trl.experimental.{method} not importable: {exc}"
    missing = [n for n in (trainer_name, config_name) if not hasattr(module, n)]
    if missing:
        return f"trl.experimental.{method} no longer has {', '.join(missing)}"
    return method_signature_problem(getattr(module, trainer_name), "tokenize_row", TOKENIZE_ROW_PARAMS)


def experimental_trainer(method: str) -> tuple[Any, Any]:
    """(trainer class, config class) of TRL's experimental ``orpo`` / ``cpo``; raise when this TRL lacks them."""
    import importlib

    problem = _experimental_problem(method)
    if problem is not None:
        raise MindprintError(f"mindprint-torch {method.upper()} needs TRL {TESTED.specifier}: {problem}")
    module = importlib.import_module(f"trl.experimental.{method}")
    trainer_name, config_name = EXPERIMENTAL[method]
    return getattr(module, trainer_name), getattr(module, config_name)


class RowTokenizerHooks:
    """Mixed in before TRL's experimental ``ORPOTrainer`` / ``CPOTrainer``: their ``tokenize_row`` forwards to
    :meth:`pretokenized_row`, which the subclass defines (TRL's column layout from the data layer's ids)."""

    def pretokenized_row(self, feature: Any) -> dict[str, Any]:
        raise NotImplementedError

    def tokenize_row(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        bound = _bind(TOKENIZE_ROW_PARAMS, args, {"model": None, **kwargs} if len(args) < 2 else kwargs)
        if bound is None:
            raise MindprintError(f"mindprint-torch needs TRL {TESTED.specifier}: tokenize_row was called with other "
                                 f"arguments than ({', '.join(TOKENIZE_ROW_PARAMS)})")
        return self.pretokenized_row(bound["feature"])


def require_kto_dataset_hook() -> None:
    """Raise when this TRL's KTOTrainer has no ``_prepare_dataset`` of the tested shape."""
    problem = _hook_problem(DATASET_HOOK, DATASET_HOOK_PARAMS, "kto")
    if problem is not None:
        raise MindprintError(f"mindprint-torch KTO needs TRL {TESTED.specifier}: {problem}")


class KTOTrainerHooks:
    """Mixed in before TRL's ``KTOTrainer``: its ``_prepare_dataset`` forwards to :meth:`pretokenized_dataset`."""

    def pretokenized_dataset(self, dataset: Any) -> Any:
        raise NotImplementedError

    def _prepare_dataset(self, *args: Any, **kwargs: Any) -> Any:
        bound = _bind(DATASET_HOOK_PARAMS, args, kwargs)
        if bound is None:
            raise MindprintError(f"mindprint-torch KTO needs TRL {TESTED.specifier}: KTOTrainer.{DATASET_HOOK} was "
                                 f"called with other arguments than ({', '.join(DATASET_HOOK_PARAMS)})")
        return self.pretokenized_dataset(bound["dataset"])


def _bind(params: tuple[str, ...], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
    signature = inspect.Signature([inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in params])
    try:
        return dict(signature.bind(*args, **kwargs).arguments)
    except TypeError:
        return None


def require_dpo_dataset_hook() -> None:
    """Raise when this TRL's DPOTrainer has no ``_prepare_dataset`` of the tested shape (it would re-tokenize
    mindprint's tokens and fail obscurely)."""
    problem = _hook_problem(DATASET_HOOK, DATASET_HOOK_PARAMS)
    if problem is not None:
        raise MindprintError(f"mindprint-torch DPO needs TRL {TESTED.specifier}: {problem}")


class DPOTrainerHooks:
    """Mixed in before TRL's ``DPOTrainer``: the private hooks TRL calls from its ``__init__`` forward to
    :meth:`pretokenized_dataset` and :meth:`reference_logps_dataset`, which the subclass defines."""

    def pretokenized_dataset(self, dataset: Any) -> Any:
        raise NotImplementedError

    def reference_logps_dataset(self, dataset: Any, batch_size: int) -> Any:
        raise NotImplementedError

    def _prepare_dataset(self, *args: Any, **kwargs: Any) -> Any:
        bound = _bind(DATASET_HOOK_PARAMS, args, kwargs)
        if bound is None:
            raise MindprintError(f"mindprint-torch DPO needs TRL {TESTED.specifier}: DPOTrainer.{DATASET_HOOK} was "
                                 f"called with other arguments than ({', '.join(DATASET_HOOK_PARAMS)})")
        return self.pretokenized_dataset(bound["dataset"])

    def _precompute_ref_logps(self, *args: Any, **kwargs: Any) -> Any:
        bound = _bind(PRECOMPUTE_HOOK_PARAMS, args, kwargs)
        if bound is None:
            _declined[DPO_PRECOMPUTE] = f"DPOTrainer.{PRECOMPUTE_HOOK} was called with other arguments"
            return super()._precompute_ref_logps(*args, **kwargs)  # type: ignore[misc]
        return self.reference_logps_dataset(bound["dataset"], int(bound["batch_size"]))


def fast_paths() -> list[FastPath]:
    """Which TRL reach-ins this installation supports, and why not where it does not."""
    checks = ((COMPACT_HEAD, _fused_head_problem()),
              (DPO_DATASET, _hook_problem(DATASET_HOOK, DATASET_HOOK_PARAMS)),
              (DPO_PRECOMPUTE, _hook_problem(PRECOMPUTE_HOOK, PRECOMPUTE_HOOK_PARAMS)),
              (ORPO_TRAINER, _experimental_problem("orpo")),
              (CPO_TRAINER, _experimental_problem("cpo")),
              (KTO_DATASET, _hook_problem(DATASET_HOOK, DATASET_HOOK_PARAMS, "kto")))
    return [fast_path(name, problem or _declined.get(name)) for name, problem in checks]


def forget_declines() -> None:
    """Clear the run-time declines recorded so far (tests start from a clean record)."""
    _declined.clear()


# -- resume (#18): TRL's running token count behind its ``num_tokens`` metric ------------------------------------
TOKEN_COUNT = "_total_train_tokens"


def set_token_count(trainer: Any, count: int) -> bool:
    """Continue TRL's ``num_tokens`` metric from ``count`` (a resumed run); False when TRL has no such counter."""
    if not isinstance(getattr(trainer, TOKEN_COUNT, None), (int, float)):
        return False
    setattr(trainer, TOKEN_COUNT, int(count))
    return True
