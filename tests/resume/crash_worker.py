"""Child process of the crash test: an MLX SFT run with a checkpoint every step, resumed when one exists.

argv: model_dir out_dir records.json. Prints ``training`` once the model is loaded (the parent kills after
that, at a random moment: mid-step or mid-checkpoint, as the run spends most of its time writing them).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    from mindprint_interfaces import create_backend
    from mindprint_kit import checkpoints

    model_dir, out, records_file = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    cfg = json.loads((records_file.parent / "config.json").read_text())
    records = json.loads(records_file.read_text())
    backend = create_backend("mlx", device="cpu", dtype="float32", seed=0)
    trainer = backend.create_sft_trainer(backend.load_model(model_dir), {**cfg, "output_dir": str(out)})
    resume = True if checkpoints.latest_checkpoint(out) is not None else None
    print("training", flush=True)
    result = trainer.train(records, resume_from_checkpoint=resume)
    (out / "result.json").write_text(json.dumps({"success": result.success, "error": result.error_message,
                                                 "history": result.metrics["history"]}))


if __name__ == "__main__":
    main()
