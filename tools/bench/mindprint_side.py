"""mindprint side: the public API only (``create_backend`` -> ``load_model`` -> ``create_*_trainer`` /
``create_trainer(method, ...)`` -> ``train``).

Per-step times come from the trainers' ``on_step(step, metrics)`` callback. Token counts per
step are taken from the step metrics when the trainer reports them (``num_tokens``, cumulative as
in TRL, is differenced); otherwise tokens/s is estimated from the data set's mean sequence length and marked so.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from typing import Any

from .common import (
    TARGET_MODULES,
    JobSpec,
    Prepared,
    dpo_eval,
    mindprint_pair_logps,
    mindprint_sft_eval,
    ref_summary,
)
from .measure import StepClock, reset_peak_rss, rss_mb

TOKEN_KEYS = ("num_tokens", "tokens", "step_tokens", "num_input_tokens")
CUMULATIVE_TOKEN_KEYS = frozenset({"num_tokens", "num_input_tokens"})


class _StepHook:
    def __init__(self, clock: StepClock) -> None:
        self.clock = clock
        self.steps: list[int] = []
        self.metric_keys: set[str] = set()
        self._seen = 0

    def on_step(self, step: int, metrics: Mapping[str, float]) -> None:
        loss = metrics.get("loss")
        self.clock.step(float(loss) if loss is not None else None)
        self.steps.append(int(step))
        self.metric_keys.update(metrics)
        for key in TOKEN_KEYS:
            if key in metrics:
                value = int(metrics[key])
                if key in CUMULATIVE_TOKEN_KEYS:  # TRL semantics: tokens seen so far
                    value, self._seen = value - self._seen, value
                self.clock.tokens.append(value)
                break

    def on_save(self, path: Any) -> None:
        return None


def run(spec: JobSpec, prep: Prepared, clock: StepClock, result: dict[str, Any]) -> None:
    import mindprint_interfaces
    from mindprint_interfaces import DPOConfig, KTOConfig, ORPOConfig, SFTConfig, create_backend

    backend_name = "pytorch" if spec.backend == "torch" else "mlx"
    versions = {"mindprint_interfaces": mindprint_interfaces.__version__}
    if spec.backend == "torch":
        import torch

        if spec.threads:  # 0 on accelerators: the thread set-up is skipped
            torch.set_num_threads(spec.threads)
        import mindprint_torch

        versions["mindprint_torch"] = mindprint_torch.__version__
    else:
        import mindprint_mlx

        versions["mindprint_mlx"] = mindprint_mlx.__version__
    result["library"] = versions
    dtype = spec.options.get("dtype", spec.dtype)
    # the bench's device name as the backend's device manager takes it: torch cpu/cuda/mps, MLX cpu or Metal
    device = spec.device if spec.backend == "torch" else ("metal" if spec.device == "mps" else spec.device)
    backend = create_backend(backend_name, device=device, dtype=dtype, seed=spec.seed)
    if spec.backend == "mlx":
        try:
            from mindprint_mlx.blas import loaded_library

            result["blas"] = loaded_library() or "bundled reference BLAS"
        except ImportError:
            pass
    t = time.perf_counter()
    quantization = spec.options.get("quantization")
    model = backend.load_model(spec.model_dir, quantization=quantization) if quantization else \
        backend.load_model(spec.model_dir)
    result["load_s"] = time.perf_counter() - t
    eval_sft = prep.sft[: spec.eval_n]
    eval_pairs = prep.pairs[: spec.eval_n]
    if spec.task == "sft":
        result["eval_before"] = {"loss": mindprint_sft_eval(model, eval_sft)}
    else:
        ref = mindprint_pair_logps(model, eval_pairs)
        result["eval_before"] = ref_summary(ref)

    common: dict[str, Any] = {
        "learning_rate": spec.lr, "max_steps": spec.total_steps, "per_device_batch_size": spec.batch_size,
        "gradient_accumulation_steps": 1, "max_length": spec.max_length, "lr_scheduler": "constant", "warmup_ratio": 0.0,
        "seed": spec.seed, "lora_r": spec.lora_r, "lora_alpha": spec.lora_alpha, "lora_dropout": 0.0,
        "target_modules": TARGET_MODULES, "output_dir": tempfile.mkdtemp(prefix="bench-mp-", dir=spec.work_dir),
        "logging_steps": 1, "save_steps": 0, "weight_decay": 0.0, "max_grad_norm": spec.max_grad_norm,
        "gradient_checkpointing": bool(spec.options.get("gradient_checkpointing", False)),
    }
    hook = _StepHook(clock)
    reset_peak_rss()
    result["rss_before_setup_mb"] = rss_mb()
    clock.setup()
    if spec.task == "sft":
        # packing: per_device_batch_size counts packed rows (the length-mix rows, #19)
        sft_cfg = SFTConfig(**common, packing=bool(spec.options.get("packing", False)))
        trainer = backend.create_sft_trainer(model, sft_cfg, callbacks=[hook])
    elif spec.task == "dpo":
        # mindprint's own default unless the job overrides it (precompute_ref_log_probs is on by default)
        overrides = {k: spec.options[k] for k in ("precompute_ref_log_probs",) if k in spec.options}
        cfg = DPOConfig(**common, beta=spec.beta, loss_type="sigmoid", reference="initial_policy", **overrides)
        trainer = backend.create_dpo_trainer(model, cfg, callbacks=[hook])
    elif spec.task == "orpo":
        trainer = backend.create_trainer("orpo", model, ORPOConfig(**common, beta=spec.beta), callbacks=[hook])
    else:  # kto: the pairs unpaired by the data layer, as TRL unpairs them
        trainer = backend.create_trainer("kto", model, KTOConfig(**common, beta=spec.beta), callbacks=[hook])
    clock.train_start()
    outcome = trainer.train(prep.train_records(spec.task))
    clock.done()
    if not outcome.success:
        raise RuntimeError(f"mindprint training failed: {outcome.error_message}")
    result["tokens_exact"] = len(clock.tokens) == len(clock.ends) and bool(clock.tokens)
    if not result["tokens_exact"]:
        clock.tokens.clear()
    result["metric_keys"] = sorted(hook.metric_keys)
    result["trainer_reported"] = {"final_loss": outcome.final_loss, "samples_trained": outcome.samples_trained,
                                  "training_time_seconds": outcome.training_time_seconds}
    trained = trainer.get_model()
    if spec.task == "sft":
        result["eval_after"] = {"loss": mindprint_sft_eval(trained, eval_sft)}
    else:
        result["eval_after"] = dpo_eval(mindprint_pair_logps(trained, eval_pairs), ref, spec.beta)
