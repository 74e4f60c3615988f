"""The model families mindprint supports: the one place that knows them (standard library only).

Per family (keyed by the ``model_type`` of the model's ``config.json``):

* the LoRA target names behind the presets ``attention``, ``mlp`` and ``all-linear`` (fused modules
  such as phi3's ``qkv_proj`` / ``gate_up_proj`` included) and their module paths inside a decoder layer;
* the config fields that change the maths, and how each backend honours them (torch: transformers
  computes them; MLX: what mindprint-mlx maps, applies or refuses — see ``mindprint_mlx.loading``);
* which fast paths apply. Both backends decide per model by a numerical probe at run time; ``fast_paths``
  records the probes' answers on each family — the MLX lean forward, the torch compact head and shared DPO
  prompt — and the family matrix (``tests/families``) checks the record against the probes.

Adding a family = one :class:`Family` entry here + one tiny-model builder in ``tools/tiny_model.py``
(``FAMILY_BUILDS``); the parametrized tests in ``tests/families`` pick it up.

``target_modules`` in an adapter config takes preset names, explicit module names, or both
(``["attention", "gate_proj"]``); :func:`resolve_targets` expands them against the modules a model
really has and refuses a name the model does not have, listing the ones it does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .errors import AdapterFormatError

PRESETS = ("attention", "mlp", "all-linear")

# Fast path names (what the README and the probes call them).
LEAN_FORWARD = "mlx-lean-forward"  # MLX: LM head on loss positions only, DPO prompt once (lean_forward.py)
COMPACT_HEAD = "torch-compact-head"  # torch: LM head on loss positions only (compact_head.py)
SHARED_PROMPT = "torch-shared-dpo-prompt"  # torch: DPO prompt once per pair (shared_prefix.py)
FAST_PATHS = (LEAN_FORWARD, COMPACT_HEAD, SHARED_PROMPT)


@dataclass(frozen=True)
class MathsField:
    """A config field that changes the forward pass, and how each backend honours it."""

    name: str
    effect: str
    mlx: str  # how mindprint-mlx computes it (transformers always computes it on torch)


@dataclass(frozen=True)
class Family:
    model_type: str
    title: str
    attention: tuple[str, ...]
    mlp: tuple[str, ...]
    fields: tuple[MathsField, ...] = ()
    # The feature the tiny model exercises (a test builds it off and checks the log-probs move).
    feature: str = ""
    # Fast paths the probes accept on this family (checked by tests/families).
    fast_paths: frozenset[str] = frozenset({LEAN_FORWARD, COMPACT_HEAD, SHARED_PROMPT})
    attention_block: str = "self_attn"
    mlp_block: str = "mlp"
    fused: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # fused name -> what it stands for
    # Fields mlx-lm's implementation hard-codes, with the value it computes (a config with that value is not
    # refused although mlx-lm does not read the field; another value is).
    mlx_fixed: Mapping[str, object] = field(default_factory=dict)
    # How the sliding window reaches MLX: "mask" (mindprint-mlx masks the sliding layers, mlx-lm ignores the
    # window), "native" (mlx-lm applies it; layer_types mapped), "none" (no window in this family).
    mlx_window: str = "none"

    @property
    def all_linear(self) -> tuple[str, ...]:
        return self.attention + self.mlp

    @property
    def module_paths(self) -> dict[str, str]:
        """Target name -> module path inside a decoder layer (``self_attn.q_proj``)."""
        return {**{n: f"{self.attention_block}.{n}" for n in self.attention},
                **{n: f"{self.mlp_block}.{n}" for n in self.mlp}}

    def preset(self, name: str) -> tuple[str, ...]:
        if name == "attention":
            return self.attention
        if name == "mlp":
            return self.mlp
        if name == "all-linear":
            return self.all_linear
        raise KeyError(name)


_TORCH_FAST = frozenset({COMPACT_HEAD, SHARED_PROMPT})  # MLX's lean-forward probe declines these families
_ALL_FAST = frozenset({LEAN_FORWARD, *_TORCH_FAST})

_QKVO = ("q_proj", "k_proj", "v_proj", "o_proj")
_GATED_MLP = ("gate_proj", "up_proj", "down_proj")

_ROPE_THETA = MathsField("rope_theta", "rotary base frequency (transformers 5: rope_parameters.rope_theta)",
                         "mapped from either layout to mlx-lm's rope_theta")
_ROPE_SCALING = MathsField("rope_scaling", "rotary scaling: llama3, linear, dynamic, yarn (transformers 5: "
                           "rope_parameters.rope_type and its keys)",
                           "mapped to mlx-lm's rope_scaling; a type mlx-lm lacks is refused")
_RMS_EPS = MathsField("rms_norm_eps", "normalisation epsilon", "passed through (mlx-lm reads it)")
_TIE = MathsField("tie_word_embeddings", "LM head shares the embedding matrix", "passed through")
_GQA = MathsField("num_key_value_heads", "grouped-query attention", "passed through")
_HEAD_DIM = MathsField("head_dim", "attention head size when not hidden/heads", "passed through")
_WINDOW = MathsField("sliding_window", "attention sees only the last `sliding_window` tokens",
                     "applied with a windowed mask on the sliding layers")
_LAYER_TYPES = MathsField("layer_types", "which layers use the sliding window",
                          "mapped (mistral: every layer; gemma3: mlx-lm's sliding_window_pattern)")
_BASE = (_ROPE_THETA, _RMS_EPS, _TIE, _GQA)
_GEMMA_FIXED = {"tie_word_embeddings": True, "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh"}

FAMILIES: dict[str, Family] = {f.model_type: f for f in (
    Family("llama", "Llama 1/2/3.x", _QKVO, _GATED_MLP,
           (*_BASE, _HEAD_DIM, _ROPE_SCALING,
            MathsField("attention_bias", "bias on q/k/v/o", "passed through"),
            MathsField("mlp_bias", "bias on the MLP", "passed through")),
           feature="rope_scaling (llama3)"),
    Family("mistral", "Mistral", _QKVO, _GATED_MLP,
           (*_BASE, _HEAD_DIM, _WINDOW,
            MathsField("layer_types", "mistral: every layer slides when sliding_window is set",
                       "every layer gets the windowed mask")),
           feature="sliding_window", fast_paths=_ALL_FAST, mlx_window="mask"),
    Family("qwen2", "Qwen2 / Qwen2.5", _QKVO, _GATED_MLP,
           (*_BASE, MathsField("use_sliding_window", "Qwen2: the window is used only when true (Qwen2.5 ships "
                                                     "false with sliding_window 131072)",
                               "false: window ignored as transformers does; true: masked on the layers layer_types marks sliding"),
            MathsField("q/k/v bias", "Qwen2 always has bias on q/k/v", "mlx-lm qwen2 has it too")),
           feature="q/k/v bias", mlx_window="mask"),
    Family("qwen3", "Qwen3", _QKVO, _GATED_MLP, (*_BASE, _HEAD_DIM,
           MathsField("q_norm/k_norm", "RMSNorm on queries and keys per head", "mlx-lm qwen3 has it")),
           feature="q/k norm"),
    Family("gemma2", "Gemma 2", _QKVO, _GATED_MLP,
           (*_BASE, _HEAD_DIM, _WINDOW,
            MathsField("attn_logit_softcapping", "tanh soft-cap on attention scores", "passed through"),
            MathsField("final_logit_softcapping", "tanh soft-cap on the logits", "passed through"),
            MathsField("query_pre_attn_scalar", "attention scale 1/sqrt(scalar)", "passed through"),
            MathsField("hidden_activation", "gelu_pytorch_tanh", "mlx-lm's gemma2 uses the same GELU (tanh)")),
           feature="final_logit_softcapping", fast_paths=_TORCH_FAST, mlx_window="mask", mlx_fixed=_GEMMA_FIXED),
    Family("gemma3_text", "Gemma 3 (text)", _QKVO, _GATED_MLP,
           (*_BASE, _HEAD_DIM, _WINDOW, _LAYER_TYPES,
            MathsField("rope_parameters.sliding_attention", "local rope base on sliding layers",
                       "mapped to rope_local_base_freq"),
            MathsField("rope_parameters.full_attention", "global rope base (and scaling) on full layers",
                       "mapped to rope_theta / rope_scaling"),
            MathsField("query_pre_attn_scalar", "attention scale 1/sqrt(scalar)", "passed through")),
           feature="sliding_window + layer_types", fast_paths=_ALL_FAST, mlx_window="native",
           mlx_fixed=_GEMMA_FIXED),
    Family("phi3", "Phi-3", ("qkv_proj", "o_proj"), ("gate_up_proj", "down_proj"),
           (*_BASE, _ROPE_SCALING,
            MathsField("partial_rotary_factor", "rope on part of the head", "passed through")),
           feature="fused qkv_proj / gate_up_proj",
           fused={"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}),
    Family("olmo2", "OLMo 2", _QKVO, _GATED_MLP, (*_BASE,
           MathsField("q_norm/k_norm", "RMSNorm on the whole query/key projection", "mlx-lm olmo2 has it")),
           feature="q/k norm"),
    Family("granite", "Granite", _QKVO, _GATED_MLP,
           (*_BASE, *(MathsField(n, "scales the " + what, "passed through") for n, what in (
               ("embedding_multiplier", "embeddings"), ("residual_multiplier", "residual branches"),
               ("attention_multiplier", "attention scores"), ("logits_scaling", "logits (divides)")))),
           feature="multipliers", fast_paths=_TORCH_FAST),
)}

# Every target name any family uses -> its module path (all families agree on the path of a shared name).
MODULE_PATHS: dict[str, str] = {}
for _family in FAMILIES.values():
    for _name, _path in _family.module_paths.items():
        if MODULE_PATHS.setdefault(_name, _path) != _path:  # pragma: no cover - a table error
            raise AssertionError(f"{_name}: two module paths {MODULE_PATHS[_name]!r} and {_path!r}")


def family(model_type: str | None) -> Family | None:
    """The family of a ``model_type`` (None when mindprint has no entry for it)."""
    return FAMILIES.get(model_type or "")


def module_path(short_name: str) -> str:
    """``q_proj`` -> ``self_attn.q_proj``; AdapterFormatError naming the known names otherwise."""
    try:
        return MODULE_PATHS[short_name]
    except KeyError:
        raise AdapterFormatError(
            f"unsupported target module {short_name!r}; supported: {', '.join(MODULE_PATHS)}") from None


def resolve_targets(requested: Iterable[str], model_type: str | None, available: Iterable[str]) -> tuple[str, ...]:
    """Expand presets and check names against the linear modules a decoder layer has (``available``, short names).

    Presets come from the family table; for a model type without an entry, ``all-linear`` means every linear
    of the layer and ``attention`` / ``mlp`` are refused. A name the model does not have is an error naming it
    and listing what the model has: never silently fewer modules than asked.
    """
    have = sorted(set(available))
    fam = family(model_type)
    out: list[str] = []
    for name in requested:
        if name in PRESETS:
            if fam is not None:
                names = fam.preset(name)
            elif name == "all-linear":
                names = tuple(have)
            else:
                raise AdapterFormatError(
                    f"target_modules preset {name!r} is not defined for model type {model_type!r} (no entry in "
                    f"mindprint_interfaces.architectures); name the modules: {', '.join(have)}")
            out.extend(n for n in names if n not in out)
        elif name not in out:
            out.append(name)
    missing = [n for n in out if n not in have]
    if missing:
        hint = ""
        if fam is not None:
            fused = [f"{f} (= {'+'.join(parts)})" for f, parts in fam.fused.items() if set(parts) & set(missing)]
            if fused:
                hint = f"; this family fuses them: {', '.join(fused)}"
        raise AdapterFormatError(
            f"target module{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)} not in this "
            f"{model_type or 'model'}'s decoder layers; it has: {', '.join(have)}{hint} "
            f"(presets: {', '.join(PRESETS)})")
    return tuple(sorted(out))
