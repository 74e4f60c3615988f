"""Child process of the SIGKILL test in test_stage_resume.py: the curriculum on MLX until it is killed.

argv: a JSON file with the pipeline settings, the SFT records and the pairs."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    from mindprint_interfaces import create_backend
    from mindprint_pipeline import DPOPipeline, PipelineConfig

    spec = json.loads(Path(sys.argv[1]).read_text())
    backend = create_backend("mlx", device="cpu")
    pipeline = DPOPipeline(config=PipelineConfig.from_dict(spec["settings"]), backend=backend)
    pipeline.train_curriculum(spec["sft"], spec["pairs"])


if __name__ == "__main__":
    main()
