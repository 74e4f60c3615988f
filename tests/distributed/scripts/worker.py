"""Worker for the distributed tests, either backend: run alone (1 process) or under a launcher
(``mlx.launch -n 2 --backend ring --`` for mlx, ``torchrun --nproc-per-node 2`` for pytorch).

    python worker.py BACKEND grads MODEL_DIR ADAPTER_DIR OUT.npz
        gradients of ONE global batch (dist_data's 4 records) for SFT and DPO through the trainers' own
        code path (``trainer.batch_gradients``: for pytorch the real TRL/HF loop with its sharded loader, DDP
        and num_items_in_batch); rank 0 writes them (keys ``sft/<param>``, ``dpo/<param>``).
    python worker.py BACKEND train MODEL_DIR OUT_DIR REPORT_DIR
        a few SFT steps then a few DPO steps; every rank writes REPORT_DIR/rank<r>.json (callback counts, results).

BACKEND is a registry name (``mlx`` / ``pytorch``); the backend is built through ``create_backend`` like a
user would, before anything imports mlx (MLXBackend preloads the fast BLAS first).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from dist_data import PREFERENCE_RECORDS, SFT_RECORDS, write_result

from mindprint_interfaces import create_backend

PACKAGES = {"mlx": "mindprint_mlx", "pytorch": "mindprint_torch"}


class Recorder:
    def __init__(self) -> None:
        self.steps: list[int] = []
        self.saves: list[str] = []

    def on_step(self, step: int, metrics: Any) -> None:
        self.steps.append(step)

    def on_save(self, path: Path) -> None:
        self.saves.append(str(path))


def main() -> None:
    name, mode, model_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    backend = create_backend(name, device="cpu", dtype="float32", seed=0)
    distributed = importlib.import_module(f"{PACKAGES[name]}.distributed")

    rank = distributed.rank()
    if mode == "grads":
        adapter_dir, out = sys.argv[4], sys.argv[5]
        import numpy as np

        arrays: dict[str, Any] = {}
        for stage in ("sft", "dpo"):
            model = backend.load_model(model_dir, adapter_path=adapter_dir)
            cfg = {"per_device_batch_size": 1, "output_dir": "unused", "max_length": 128}
            if stage == "sft":
                trainer: Any = backend.create_sft_trainer(model, cfg)
                loss, grads = trainer.batch_gradients(SFT_RECORDS)
            else:
                trainer = backend.create_dpo_trainer(model, {**cfg, "beta": 0.5})
                loss, grads = trainer.batch_gradients(PREFERENCE_RECORDS)
            arrays[f"{stage}/__loss__"] = np.array(loss, dtype=np.float64)
            arrays.update({f"{stage}/{k}": v for k, v in grads.items()})
        if distributed.world_size() == 1:
            # Negative control: what a per-rank mean averaged over 2 ranks would give (ranks hold examples 0,2 and 1,3).
            halves = []
            for shard in ([SFT_RECORDS[0], SFT_RECORDS[2]], [SFT_RECORDS[1], SFT_RECORDS[3]]):
                model = backend.load_model(model_dir, adapter_path=adapter_dir)
                halves.append(backend.create_sft_trainer(model, {"per_device_batch_size": 1, "output_dir": "unused",
                                                                 "max_length": 128}).batch_gradients(shard)[1])
            arrays.update({f"mean_of_means/{k}": (halves[0][k] + halves[1][k]) / 2 for k in halves[0]})
        if rank == 0:
            np.savez(out, world_size=distributed.world_size(), **arrays)
        return
    out_dir, report_dir = Path(sys.argv[4]), Path(sys.argv[5])
    model = backend.load_model(model_dir)
    rec = Recorder()
    common = {"per_device_batch_size": 1, "max_length": 128, "max_steps": 3, "lora_r": 4, "lora_alpha": 8,
              "output_dir": str(out_dir), "save_steps": 2}
    sft = backend.create_sft_trainer(model, {**common, "learning_rate": 1e-2}, callbacks=[rec])
    sft_result = sft.train_on_topic(SFT_RECORDS, "u1/c1/sft")
    dpo = backend.create_dpo_trainer(model, {**common, "learning_rate": 1e-3, "beta": 0.5}, callbacks=[rec])
    dpo_result = dpo.train_on_topic(PREFERENCE_RECORDS, "u1/c1/dpo")
    write_result(report_dir / f"rank{rank}.json", {
        "rank": rank, "world_size": distributed.world_size(), "steps": rec.steps, "saves": rec.saves,
        "sft": {"success": sft_result.success, "error": sft_result.error_message, "loss": sft_result.final_loss,
                "adapter": sft_result.adapter_path, "samples": sft_result.samples_trained},
        "dpo": {"success": dpo_result.success, "error": dpo_result.error_message, "loss": dpo_result.final_loss,
                "adapter": dpo_result.adapter_path, "samples": dpo_result.samples_trained},
    })


if __name__ == "__main__":
    main()
