"""mindprint_interfaces.phases: the library's long phases as events, on both backends (a DPO run announces its
tokenisation, its reference pass pair by pair and its save; the evaluator one question at a time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mindprint_interfaces import DPOConfig, create_backend, phases
from mindprint_interfaces.phases import Phase
from mindprint_pipeline.evaluation import DefaultEvaluator

PAIRS = [{"prompt": f"What is {i} plus {i}?", "chosen": f"The answer is {2 * i}.", "rejected": "no"} for i in range(5)]


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, int, int | None]] = []

    def on_phase_start(self, phase: Phase) -> None:
        self.events.append(("start", phase.name, phase.done, phase.total))

    def on_phase_advance(self, phase: Phase) -> None:
        self.events.append(("advance", phase.name, phase.done, phase.total))

    def on_phase_end(self, phase: Phase, failed: bool) -> None:
        self.events.append(("failed" if failed else "end", phase.name, phase.done, phase.total))


def test_nesting_order_and_listener_lifetime() -> None:
    rec = Recorder()
    with phases.listening(rec):
        with phases.phase("merge", detail="u1"), phases.phase("load model") as inner:
            assert inner.label == "load model"
        with pytest.raises(KeyError), phases.phase("save adapter", total=2) as p:
            p.advance()
            raise KeyError("x")
    with phases.phase("unheard"):
        pass
    assert rec.events == [("start", "merge", 0, None), ("start", "load model", 0, None),
                          ("end", "load model", 0, None), ("end", "merge", 0, None),
                          ("start", "save adapter", 0, 2), ("advance", "save adapter", 1, 2),
                          ("failed", "save adapter", 1, 2)]
    assert phases.listeners() == ()


@pytest.mark.parametrize("name", [pytest.param("pytorch", marks=pytest.mark.torch),
                                  pytest.param("mlx", marks=pytest.mark.mlx)])
def test_dpo_and_evaluation_announce_their_phases(name: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    backend = create_backend(name, device="cpu", dtype="float32", seed=0)
    model = backend.load_model(tiny_model_dir)
    config = DPOConfig(output_dir=str(tmp_path / "dpo"), max_steps=1, per_device_batch_size=2, lora_r=4,
                       lora_alpha=8)
    rec = Recorder()
    with phases.listening(rec):
        result = backend.create_dpo_trainer(model, config).train(PAIRS, adapter_dir=tmp_path / "adapter")
        assert result.success, result.error_message
        DefaultEvaluator().evaluate(model, [{"question": "What is 1 plus 1?", "answer": "2"},
                                            {"question": "What is 2 plus 2?", "answer": "4"}])
    names = [(kind, phase) for kind, phase, _, _ in rec.events]
    assert names.index(("start", "tokenise")) < names.index(("start", "reference pass")) \
        < names.index(("end", "reference pass")) < names.index(("start", "save adapter"))
    ref = [(kind, done, total) for kind, phase, done, total in rec.events if phase == "reference pass"]
    assert ref[0] == ("start", 0, 5) and ref[-1] == ("end", 5, 5)
    assert all(b[1] > a[1] for a, b in zip(ref[1:-2], ref[2:-1]))  # advances count up, pair by pair
    answers = [(kind, done) for kind, phase, done, _ in rec.events if phase == "answer questions"]
    assert answers == [("start", 0), ("advance", 1), ("advance", 2), ("end", 2)]
