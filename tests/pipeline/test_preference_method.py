"""pipeline.preference_method / sft_before_preference: the preference stage's config per topic attempt."""

from __future__ import annotations

import pytest

from mindprint_interfaces import ConfigError, CPOConfig, DPOConfig, KTOConfig, ORPOConfig
from mindprint_pipeline.config import PipelineConfig


@pytest.mark.parametrize(("method", "cls"), [("dpo", DPOConfig), ("orpo", ORPOConfig), ("cpo", CPOConfig),
                                             ("kto", KTOConfig)])
def test_preference_config_is_the_methods_section(method: str, cls: type, tmp_path: object) -> None:
    cfg = PipelineConfig.from_dict({"preference_method": method, "dpo_steps_per_topic": 7,
                                    method: {"beta": 0.3}})
    out = cfg.preference_config(seed=5, output_dir="x")
    assert type(out) is cls
    assert (out.beta, out.max_steps, out.seed, out.output_dir) == (0.3, 7, 5, "x")


def test_an_explicit_max_steps_wins() -> None:
    cfg = PipelineConfig.from_dict({"preference_method": "orpo", "orpo": {"max_steps": 3}})
    assert cfg.preference_config(seed=0).max_steps == 3


def test_default_is_dpo_after_sft() -> None:
    cfg = PipelineConfig()
    assert (cfg.preference_method, cfg.sft_before_preference) == ("dpo", True)


@pytest.mark.parametrize("method", ["dpo", "kto"])
def test_no_sft_needs_a_reference_free_method(method: str) -> None:
    with pytest.raises(ConfigError, match="sft_before_preference"):
        PipelineConfig.from_dict({"preference_method": method, "sft_before_preference": False})


def test_unknown_method_is_named() -> None:
    with pytest.raises(ConfigError, match="preference_method"):
        PipelineConfig.from_dict({"preference_method": "ppo"})
