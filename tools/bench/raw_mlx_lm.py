"""Raw mlx-lm side: LoRA SFT through mlx-lm's tuner API (``linear_to_lora_layers`` + ``tuner.trainer.train``).

The dataset yields ``(token_ids, offset)`` pairs — mlx-lm's own "completion only" format — built
from the shared data layer's tokens, so both sides train on identical ids and masks (offset =
index of the first completion token). Optimiser: ``mlx.optimizers.AdamW`` with weight decay 0 and
bias correction on (what mindprint uses; mlx-lm's default Adam has no bias correction, which
would change the maths, not the cost). mlx-lm does not clip gradients, so clipping is off on
every side (``max_grad_norm=0``). The length-mix row (#19) runs unpacked (mlx-lm cannot pack; its
``iterate_batches`` sorts by length and pads each batch to a multiple of 32) with the number of sequences per
step that carries the packed rows' real tokens (set in :mod:`.job`); the tokens counted are the real lengths.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

from mindprint_interfaces.data import IGNORE_INDEX

from .common import TARGET_MODULES, JobSpec, Prepared, mlx_sft_eval
from .measure import StepClock, reset_peak_rss, rss_mb


def lora_config(spec: JobSpec) -> dict[str, Any]:
    return {"rank": spec.lora_r, "scale": spec.lora_alpha / spec.lora_r, "dropout": 0.0,
            "keys": [f"self_attn.{m}" for m in TARGET_MODULES]}


def model_config(model_dir: str) -> dict[str, Any]:
    """Config overrides so mlx-lm builds the same model transformers does.

    transformers 5 writes ``rope_theta`` under ``rope_parameters``; mlx-lm's ``ModelArgs`` only reads
    the top-level key and silently falls back to 10000 (SmolLM2 uses 100000). The compute cost is the
    same either way, but the losses would not be comparable, so the peers get the value explicitly.
    """
    import json

    config = json.loads((Path(model_dir) / "config.json").read_text())
    params = config.get("rope_parameters") or {}
    if "rope_theta" not in config and "rope_theta" in params:
        return {"rope_theta": params["rope_theta"]}
    return {}


def set_initial_weights(model: Any, seed: int) -> None:
    """Overwrite mlx-lm's own lora_a draw with the kit's (mindprint_kit.lora_init: PEFT's rule in numpy, keyed by the
    PEFT name), so this peer starts from mindprint's initial adapter. Only mlx-lm and the kit are imported here
    (not mindprint_mlx, whose import would change this peer's BLAS)."""
    import mlx.core as mx
    from mlx_lm.tuner.lora import LoRALinear

    from mindprint_kit.lora_init import initial_lora_weights

    modules = {(i, name): m for i, block in enumerate(model.layers) for name, m in block.named_modules()
               if isinstance(m, LoRALinear)}
    shapes = {site: (int(m.lora_a.shape[1]), int(m.lora_a.shape[0]), int(m.lora_b.shape[1]))
              for site, m in modules.items()}
    for site, (a, b) in initial_lora_weights(shapes, seed).items():
        modules[site].lora_a = mx.array(a).T
        modules[site].lora_b = mx.array(b).T
    mx.eval(model.parameters())


def load_model(spec: JobSpec) -> Any:
    """``mlx_lm.load`` with the config overrides, in the run's dtype (``--device mps``: bf16 on Metal, which is
    MLX's default device there; on the CPU the fp32 weights as loaded)."""
    import mlx.core as mx
    from mlx_lm import load

    model, _tok = load(spec.model_dir, model_config=model_config(spec.model_dir))
    if spec.dtype != "float32":
        model.set_dtype(getattr(mx, spec.dtype))
    return model


def adamw(spec: JobSpec) -> Any:
    import mlx.optimizers as optim

    return optim.AdamW(learning_rate=spec.lr, weight_decay=0.0, bias_correction=True)


def run(spec: JobSpec, prep: Prepared, clock: StepClock, result: dict[str, Any]) -> None:
    import mlx.core as mx
    import numpy as np
    from mlx_lm.tuner import trainer as tuner
    from mlx_lm.tuner.callbacks import TrainingCallback
    from mlx_lm.tuner.utils import linear_to_lora_layers

    result["library"] = {"mlx_lm": version("mlx-lm"), "mlx": version("mlx")}
    mx.random.seed(spec.seed)
    np.random.seed(spec.seed)
    t = time.perf_counter()
    model = load_model(spec)
    result["load_s"] = time.perf_counter() - t
    eval_sft = prep.sft[: spec.eval_n]
    result["eval_before"] = {"loss": mlx_sft_eval(model, eval_sft)}

    reset_peak_rss()
    result["rss_before_setup_mb"] = rss_mb()
    clock.setup()
    model.freeze()
    linear_to_lora_layers(model, len(model.layers), lora_config(spec))
    set_initial_weights(model, spec.seed)  # the kit's initial adapter, as mindprint starts from (set-up, untimed)
    dataset = [(list(e.input_ids), next(i for i, t in enumerate(e.labels) if t != IGNORE_INDEX)) for e in prep.sft]

    def counting_batches(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for batch, lengths in tuner.iterate_batches(*args, **kwargs):
            clock.tokens.append(int(lengths[:, 1].sum().item()))
            yield batch, lengths

    class Timing(TrainingCallback):  # type: ignore[misc]
        def on_train_loss_report(self, train_info: dict[str, Any]) -> None:
            clock.step(float(train_info["train_loss"]))

    out = Path(tempfile.mkdtemp(prefix="bench-mlxlm-", dir=spec.work_dir))
    args = tuner.TrainingArgs(batch_size=spec.batch_size, iters=spec.total_steps, val_batches=0, steps_per_report=1,
                              steps_per_eval=10**9, steps_per_save=10**9, max_seq_length=spec.max_length,
                              adapter_file=str(out / "adapters.safetensors"), grad_checkpoint=False)
    optimizer = adamw(spec)
    clock.train_start()
    tuner.train(model=model, optimizer=optimizer, train_dataset=dataset, val_dataset=None, args=args,
                iterate_batches=counting_batches, training_callback=Timing())
    clock.done()
    result["tokens_exact"] = True
    result["eval_after"] = {"loss": mlx_sft_eval(model, eval_sft)}
