"""A diverging topic never poisons the curriculum: not carried forward, not passed, the run completes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from mindprint_pipeline import DPOPipeline

from .conftest import fast_config, make_backend

BAD_TOPIC = "geography/europe/capitals"


class PoisonWeights:
    """At step 1, every trainable weight becomes NaN (what an exploding step leaves behind)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def on_step(self, step: int, metrics: Mapping[str, float]) -> None:
        if step == 1:
            import mlx.core as mx
            from mlx.utils import tree_map
            module = self.model.module
            module.update(tree_map(lambda p: mx.full(p.shape, float("nan"), dtype=p.dtype),
                                   module.trainable_parameters()))

    def on_save(self, path: Path) -> None:
        pass


@pytest.mark.mlx
def test_a_nan_topic_is_failed_not_carried_and_the_run_completes(tiny_model_dir: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    backend = make_backend("mlx")
    real = backend.create_sft_trainer
    poisoned: list[str] = []

    def create_sft_trainer(model: Any, config: Any = None, callbacks: Sequence[Any] = (), **kw: Any) -> Any:
        cbs = list(callbacks)
        if not poisoned:  # the first SFT run is the first topic's
            poisoned.append(str(getattr(config, "output_dir", "")))
            cbs.append(PoisonWeights(model))
        return real(model, config, callbacks=cbs, **kw)

    monkeypatch.setattr(backend, "create_sft_trainer", create_sft_trainer)
    cfg = fast_config(tiny_model_dir, tmp_path / "out", topic_pass_threshold=0.0,
                     dpo_trigger_threshold=0.0)  # no DPO: SFT alone decides (the probe's case)
    result = DPOPipeline(config=cfg, backend=backend).train_curriculum()
    assert len(poisoned) == 1 and "capitals" in poisoned[0]
    assert result.completed
    bad = next(t for t in result.topics if t.topic_id == BAD_TOPIC)
    assert bad.status == "failed" and bad.adapter_path is None
    assert "non-finite weights" in (bad.error or "")
    others = [t for t in result.topics if t.topic_id != BAD_TOPIC]
    assert all(t.status == "passed" for t in others)  # the next topics train from the last finite state
    assert result.final_model_path and Path(result.final_model_path).is_dir()
