"""Raw mlx-lm-lora side: its DPO trainer (``mlx_lm_lora.trainer.dpo_trainer.train_dpo``) and its ORPO trainer
(``orpo_trainer.train_orpo``: no reference model; its NLL term is the chosen completion's mean log-prob, not TRL's
prompt-inclusive token mean, so its training loss is not TRL's number — the fixed-set check is the same for all).

Set up as its ``mlx_lm_lora.train`` entry point does for ``--train-mode dpo``: the policy gets
mlx-lm LoRA layers, the reference is a second full copy of the model loaded from the same path
(``load_reference_model``; no adapters, frozen). The pairs are the shared data layer's tokens in
``DPODataset``'s item format (full chosen / rejected sequences + prompt length), so both sides see
the same ids and completion masks. Optimiser and clipping as in ``raw_mlx_lm``.

Linux CPU shim: ``train_dpo`` calls ``mx.set_wired_limit(mx.device_info()["max_recommended_working_set_size"])``,
a key only Metal reports; we add the key (value 0 = no limit) so the trainer runs on CPU. It does
not change the training computation.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

from .common import JobSpec, Prepared, dpo_eval, mlx_pair_logps, ref_summary
from .measure import StepClock, reset_peak_rss, rss_mb
from .raw_mlx_lm import adamw, load_model, lora_config, set_initial_weights


class _Pairs:
    def __init__(self, prep: Prepared) -> None:
        self.items = [{"chosen": list(p.prompt_ids) + list(p.chosen_ids),
                       "rejected": list(p.prompt_ids) + list(p.rejected_ids),
                       "chosen_prompt_length": len(p.prompt_ids),
                       "rejected_prompt_length": len(p.prompt_ids)} for p in prep.pairs]

    def __getitem__(self, idx: int) -> dict[str, Any]:
        return self.items[idx]

    def __len__(self) -> int:
        return len(self.items)


def _cpu_shim(result: dict[str, Any]) -> None:
    import mlx.core as mx

    if "max_recommended_working_set_size" not in mx.device_info():
        original = mx.device_info

        def device_info(*args: Any, **kwargs: Any) -> dict[str, Any]:
            return {**original(*args, **kwargs), "max_recommended_working_set_size": 0}

        mx.device_info = device_info
        result.setdefault("notes", []).append("shimmed mx.device_info()['max_recommended_working_set_size'] (CPU)")


def _policy(spec: JobSpec, prep: Prepared, result: dict[str, Any]) -> tuple[Any, list[Any], list[Any]]:
    """The model loaded as mlx_lm_lora.train does, seeded; the fixed-set reference log-probs before training."""
    import mlx.core as mx
    import numpy as np

    result["library"] = {"mlx_lm_lora": version("mlx-lm-lora"), "mlx_lm": version("mlx-lm"), "mlx": version("mlx")}
    _cpu_shim(result)
    mx.random.seed(spec.seed)
    np.random.seed(spec.seed)
    t = time.perf_counter()
    model = load_model(spec)
    result["load_s"] = time.perf_counter() - t
    eval_pairs = list(prep.pairs[: spec.eval_n])
    ref = mlx_pair_logps(model, eval_pairs)
    result["eval_before"] = ref_summary(ref)
    return model, eval_pairs, ref


def _add_lora(model: Any, spec: JobSpec) -> None:
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model.freeze()
    linear_to_lora_layers(model, len(model.layers), lora_config(spec))
    set_initial_weights(model, spec.seed)  # the kit's initial adapter, as mindprint starts from (set-up, untimed)


def _timing(clock: StepClock) -> Any:
    from mlx_lm.tuner.callbacks import TrainingCallback

    class Timing(TrainingCallback):  # type: ignore[misc]
        def on_train_loss_report(self, train_info: dict[str, Any]) -> None:
            clock.step(float(train_info["train_loss"]))

    return Timing()


def run_orpo(spec: JobSpec, prep: Prepared, clock: StepClock, result: dict[str, Any]) -> None:
    """``train_orpo`` as ``mlx_lm_lora.train --train-mode orpo`` sets it up (its own batch order)."""
    from mlx_lm_lora.trainer import orpo_trainer

    model, eval_pairs, ref = _policy(spec, prep, result)
    reset_peak_rss()
    result["rss_before_setup_mb"] = rss_mb()
    clock.setup()
    _add_lora(model, spec)
    original_batches: Any = orpo_trainer.iterate_orpo_batches

    def counting_batches(*args: Any, **kwargs: Any) -> Iterator[Any]:
        yield from _counted(clock, original_batches(*args, **kwargs))

    orpo_trainer.iterate_orpo_batches = counting_batches
    out = Path(tempfile.mkdtemp(prefix="bench-mlxlora-", dir=spec.work_dir))
    args = orpo_trainer.ORPOTrainingArgs(
        batch_size=spec.batch_size, iters=spec.total_steps, val_batches=0, steps_per_report=1,
        steps_per_eval=10**9, steps_per_save=10**9, max_seq_length=spec.max_length,
        adapter_file=str(out / "adapters.safetensors"), grad_checkpoint=False, beta=spec.beta,
        seq_step_size=None, gradient_accumulation_steps=1)
    clock.train_start()
    try:
        orpo_trainer.train_orpo(model=model, optimizer=adamw(spec), train_dataset=_Pairs(prep), val_dataset=None,
                                args=args, training_callback=_timing(clock))
    finally:
        orpo_trainer.iterate_orpo_batches = original_batches
    clock.done()
    result["tokens_exact"] = True
    result["eval_after"] = dpo_eval(mlx_pair_logps(model, eval_pairs), ref, spec.beta)


def _counted(clock: StepClock, batches: Iterator[Any]) -> Iterator[Any]:
    """mlx-lm-lora's (chosen, rejected, ...) batches, passed on, with their non-padding tokens on the clock."""
    for batch in batches:
        chosen, rejected = batch[0], batch[1]
        clock.tokens.append(int(((chosen != 0).sum() + (rejected != 0).sum()).item()))
        yield batch


def run(spec: JobSpec, prep: Prepared, clock: StepClock, result: dict[str, Any]) -> None:
    from mlx_lm_lora.trainer import dpo_trainer

    model, eval_pairs, ref = _policy(spec, prep, result)
    reset_peak_rss()
    result["rss_before_setup_mb"] = rss_mb()
    clock.setup()
    ref_model = load_model(spec)  # as load_reference_model
    ref_model.freeze()
    _add_lora(model, spec)
    original_batches: Any = dpo_trainer.iterate_dpo_batches
    same_order = spec.options.get("order") == "mindprint"
    pairs = _Pairs(prep)

    def mindprint_order() -> Iterator[Any]:
        """mlx-lm-lora's own batching and padding, but the pairs in mindprint-mlx's step order."""
        from mindprint_kit.schedule import plan_steps

        for planned in plan_steps(len(pairs), spec.batch_size, 1, spec.total_steps, spec.seed):
            for indices in planned.micro_batches:
                yield from original_batches([pairs[i] for i in indices], spec.batch_size, spec.max_length, train=False)

    # train_dpo calls next(iterate_dpo_batches(...)) once per step: one random batch each time. For the
    # same-order variant the batches come from one persistent generator instead.
    ordered = mindprint_order()

    def counting_batches(*args: Any, **kwargs: Any) -> Iterator[Any]:
        yield from _counted(clock, ordered if same_order else original_batches(*args, **kwargs))

    dpo_trainer.iterate_dpo_batches = counting_batches

    out = Path(tempfile.mkdtemp(prefix="bench-mlxlora-", dir=spec.work_dir))
    args = dpo_trainer.DPOTrainingArgs(
        batch_size=spec.batch_size, iters=spec.total_steps, val_batches=0, steps_per_report=1,
        steps_per_eval=10**9, steps_per_save=10**9, max_seq_length=spec.max_length,
        adapter_file=str(out / "adapters.safetensors"), grad_checkpoint=False, beta=spec.beta, loss_type="sigmoid",
        seq_step_size=None, gradient_accumulation_steps=1)
    clock.train_start()
    try:
        dpo_trainer.train_dpo(model=model, ref_model=ref_model, optimizer=adamw(spec), train_dataset=pairs,
                              val_dataset=None, args=args, training_callback=_timing(clock), loss_type="sigmoid")
    finally:
        dpo_trainer.iterate_dpo_batches = original_batches
    clock.done()
    result["tokens_exact"] = True
    del ref_model
    result["eval_after"] = dpo_eval(mlx_pair_logps(model, eval_pairs), ref, spec.beta)

