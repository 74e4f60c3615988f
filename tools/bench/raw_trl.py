"""Raw TRL side: what a user would write with transformers + PEFT + TRL directly.

ORPO: ``trl.experimental.orpo.ORPOTrainer`` and KTO: ``KTOTrainer`` on the same conversational text as DPO (KTO
on the pairs unpaired by TRL's own ``unpair_preference_dataset``), LoRA through ``peft_config`` (KTO's
reference: the adapter-disabled base), every other setting as for DPO.

SFT: ``SFTTrainer`` on the pre-tokenized ``input_ids``/``labels`` dataset produced by the shared
data layer (the exact tokens mindprint trains on); the length-mix rows (#19) set ``packing=True`` (TRL's own bfd
packing and padding-free collator) or ``padding_free=True`` unpacked, the collator's token count is then the
flattened row's length (real tokens only). DPO: ``DPOTrainer`` on the prompt/chosen/
rejected *text* in conversational form (TRL always re-tokenizes; its real per-step token counts
are recorded from its collator). LoRA through ``peft_config``, so the reference is the adapter-
disabled policy (the base) unless ``precompute_ref_log_probs=True``. The adapter starts from the kit's initial
weights (:func:`kit_initial_adapter`, in the set-up, before the timed steps), as mindprint's does.
"""

from __future__ import annotations

import tempfile
from typing import Any

from .common import TARGET_MODULES, JobSpec, Prepared, dpo_eval, ref_summary, torch_pair_logps, torch_sft_eval
from .measure import StepClock


def _counting_collator(collator: Any, clock: StepClock) -> Any:
    def collate(examples: list[dict[str, Any]]) -> Any:
        batch = collator(examples)
        if "attention_mask" in batch:
            clock.tokens.append(int(batch["attention_mask"].sum()))
        elif "position_ids" in batch:  # padding-free (packed or not): one row of real tokens, no padding
            clock.tokens.append(int(batch["input_ids"].numel()))
        else:  # ORPO: chosen_/rejected_attention_mask; KTO: completion_ (+ KL_completion_) over prompt + completion
            clock.tokens.append(sum(int(v.sum()) for k, v in batch.items()
                                    if k.endswith("attention_mask") and not k.startswith("prompt")))
        return batch

    return collate


def _timing_callback(clock: StepClock) -> Any:
    from transformers import TrainerCallback

    class Timing(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            clock.step()

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
            if logs and "loss" in logs and clock.losses:
                clock.losses[-1] = float(logs["loss"])

    return Timing()


def _common_args(spec: JobSpec, out_dir: str) -> dict[str, Any]:
    return {
        "output_dir": out_dir,
        "per_device_train_batch_size": spec.batch_size,
        "gradient_accumulation_steps": 1,
        "max_steps": spec.total_steps,
        "learning_rate": spec.lr,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "max_grad_norm": spec.max_grad_norm,
        "logging_steps": 1,
        "save_strategy": "no",
        "eval_strategy": "no",
        "report_to": [],
        "bf16": spec.dtype == "bfloat16",  # --device cuda|mps: bf16 (the model is loaded in bf16 too)
        "fp16": False,
        "gradient_checkpointing": False,
        "seed": spec.seed,
        "data_seed": spec.seed,
        "use_cpu": spec.device == "cpu",  # on cuda/mps the Trainer places the model itself
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "max_length": spec.max_length,
    }


def run(spec: JobSpec, prep: Prepared, clock: StepClock, hf_tokenizer: Any, result: dict[str, Any]) -> None:
    import peft
    import torch
    import transformers
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl.trainer.dpo_config import DPOConfig as TRLDPOConfig
    from trl.trainer.dpo_trainer import DPOTrainer
    from trl.trainer.sft_config import SFTConfig as TRLSFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    if spec.threads:  # 0 on accelerators: the thread set-up is skipped
        torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)
    result["library"] = {"trl": trl.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                         "torch": torch.__version__}
    import time

    t = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(spec.model_dir, dtype=getattr(torch, spec.dtype))
    if spec.device != "cpu":
        model.to(spec.device)  # where the Trainer would put it, so the fixed-set check runs there too
    result["load_s"] = time.perf_counter() - t
    eval_sft = prep.sft[: spec.eval_n]
    eval_pairs = prep.pairs[: spec.eval_n]
    if spec.task == "sft":
        result["eval_before"] = {"loss": torch_sft_eval(model, eval_sft)}
    else:
        ref = torch_pair_logps(model, eval_pairs)

    lora = LoraConfig(r=spec.lora_r, lora_alpha=int(spec.lora_alpha), lora_dropout=0.0, target_modules=list(TARGET_MODULES),
                      task_type="CAUSAL_LM")
    out_dir = tempfile.mkdtemp(prefix="bench-trl-", dir=spec.work_dir)
    result["rss_before_setup_mb"] = _reset_and_rss()
    clock.setup()
    trainer: Any
    if spec.task == "sft":
        ds = Dataset.from_list([{"input_ids": list(e.input_ids), "labels": list(e.labels)} for e in prep.sft])
        # the length-mix rows (#19): TRL packs itself (bfd, padding-free collator), or runs unpacked padding-free
        packing, padding_free = bool(spec.options.get("packing")), bool(spec.options.get("padding_free"))
        args = _common_args(spec, out_dir)
        if padding_free and not packing:
            args["max_length"] = None  # TRL refuses it unpacked; the data layer truncated to spec.max_length already
        cfg: Any = TRLSFTConfig(**args, packing=packing, packing_strategy="bfd", padding_free=padding_free)
        trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=hf_tokenizer,
                                 peft_config=lora, callbacks=[_timing_callback(clock)])
    else:
        rows = [{"prompt": [{"role": "user", "content": r["prompt"]}],
                 "chosen": [{"role": "assistant", "content": r["chosen"]}],
                 "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in prep.pref_records]
        callbacks = [_timing_callback(clock)]
        if spec.task == "dpo":
            cfg = TRLDPOConfig(**_common_args(spec, out_dir), beta=spec.beta, loss_type=["sigmoid"],
                               precompute_ref_log_probs=bool(spec.options.get("precompute_ref_log_probs", False)))
            trainer = DPOTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(rows),
                                 processing_class=hf_tokenizer, peft_config=lora, callbacks=callbacks)
        elif spec.task == "orpo":
            from trl.experimental.orpo import ORPOConfig, ORPOTrainer

            cfg = ORPOConfig(**_common_args(spec, out_dir), beta=spec.beta)
            trainer = ORPOTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(rows),
                                  processing_class=hf_tokenizer, peft_config=lora, callbacks=callbacks)
        else:
            from trl import KTOConfig, KTOTrainer, unpair_preference_dataset

            cfg = KTOConfig(**_common_args(spec, out_dir), beta=spec.beta)
            trainer = KTOTrainer(model=model, args=cfg, train_dataset=unpair_preference_dataset(Dataset.from_list(rows)),
                                 processing_class=hf_tokenizer, peft_config=lora, callbacks=callbacks)
    trainer.data_collator = _counting_collator(trainer.data_collator, clock)
    kit_initial_adapter(trainer.model, spec.seed)  # set-up, before the timed steps
    clock.train_start()
    trainer.train()
    clock.done()
    result["tokens_exact"] = True
    policy = trainer.model
    if spec.task == "sft":
        result["eval_after"] = {"loss": torch_sft_eval(policy, eval_sft)}
    else:
        result["eval_before"] = ref_summary(ref)
        result["eval_after"] = dpo_eval(torch_pair_logps(policy, eval_pairs), ref, spec.beta)


def kit_initial_adapter(peft_model: Any, seed: int) -> None:
    """Overwrite PEFT's own (torch RNG) lora_A with the kit's draw of the same rule (mindprint_kit.lora_init), so
    this peer starts from mindprint's initial adapter and the fixed-set losses compare like for like. Public PEFT
    API only: the adapter's state dict keys name the sites, its shapes give r/in/out."""
    import torch
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    from mindprint_interfaces.adapter_format import LoraKey, parse_peft_key
    from mindprint_kit.lora_init import initial_lora_weights

    state = get_peft_model_state_dict(peft_model)
    halves: dict[tuple[int, str], dict[str, Any]] = {}
    for name, value in state.items():
        key = parse_peft_key(name)
        halves.setdefault((key.layer, key.module), {})[key.matrix] = value.shape
    shapes = {site: (int(h["A"][0]), int(h["A"][1]), int(h["B"][0])) for site, h in halves.items()}
    tensors = {}
    for (layer, module), (a, b) in initial_lora_weights(shapes, seed).items():
        tensors[LoraKey(layer, module, "A").peft()] = torch.from_numpy(a)
        tensors[LoraKey(layer, module, "B").peft()] = torch.from_numpy(b)
    set_peft_model_state_dict(peft_model, tensors)


def _reset_and_rss() -> float | None:
    from .measure import reset_peak_rss, rss_mb

    reset_peak_rss()
    return rss_mb()
