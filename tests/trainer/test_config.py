"""Config schema: key paths, allowed values, override precedence (flags > MINDPRINT_BACKEND > file)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mindprint_interfaces import ConfigError
from mindprint_trainer.config import TrainerConfig, bundled_config_text, load_config, parse_set

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_root_config_is_the_bundled_one() -> None:
    assert (ROOT / "configs" / "training_pipeline.yaml").read_text() == bundled_config_text()


def test_bundled_config_is_valid_and_complete() -> None:
    cfg = load_config(ROOT / "configs" / "training_pipeline.yaml", env={})
    assert cfg.backend.type == "pytorch"
    assert cfg.sft_config().max_length == 256
    assert cfg.dpo_config().loss_type == "sigmoid"
    assert cfg.pipeline.merge_after_unit is True


def test_defaults_without_file() -> None:
    cfg = load_config(None, env={})
    assert isinstance(cfg, TrainerConfig)


@pytest.mark.parametrize(("data", "needle"), [
    ({"backend": {"device": "tpu"}}, "backend.device: must be one of auto, cpu, cuda, mps, gpu, metal, got 'tpu'"),
    ({"backend": {"dtype": "fp8"}}, "backend.dtype: must be one of auto, float32, float16, bfloat16, got 'fp8'"),
    ({"backend": {"type": 3}}, "backend.type: expected str | null, got 3"),
    ({"backend": {"devise": "cpu"}}, 'unknown key "backend.devise" (did you mean "device"?)'),
    ({"sft": {"learning_rat": 1e-4}}, 'unknown key "sft.learning_rat" (did you mean "learning_rate"?)'),
    ({"sft": {"learning_rate": -1}}, "sft.learning_rate: must be > 0"),
    ({"dpo": {"loss_type": "kto"}}, "dpo.loss_type: must be one of"),
    ({"pipeline": {"accuracy_threshold": 2}}, "pipeline.accuracy_threshold: must be in [0, 1], got 2.0"),
    ({"pipeline": {"max_retries_per_topc": 2}}, 'unknown key "pipeline.max_retries_per_topc" (did you mean'),
    ({"generation": {"temperature": -1}}, "generation.temperature: must be >= 0"),
    ({"model": {"pth": "x"}}, 'unknown key "model.pth" (did you mean "path"?)'),
    ({"output_dri": "x"}, 'unknown key "output_dri" (did you mean "output_dir"?)'),
    ({"backend": "pytorch"}, "backend: expected a mapping"),
])
def test_errors_name_the_key_path(tmp_path: Path, data: object, needle: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert needle in message
    assert message.startswith(str(path))
    assert "\n" not in message


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "backend:\n  type: pytorch\n  device: [cpu\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml:\d+: invalid YAML"):
        load_config(path, env={})


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"), env={})


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent/cfg.yaml", env={})


def test_backend_precedence_flag_env_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"backend": {"type": "pytorch"}})
    assert load_config(path, env={}).backend.type == "pytorch"
    assert load_config(path, env={"MINDPRINT_BACKEND": "mlx"}).backend.type == "mlx"
    assert load_config(path, backend="torch", env={"MINDPRINT_BACKEND": "mlx"}).backend.type == "pytorch"


def test_device_dtype_flags_override_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"backend": {"type": "pytorch", "device": "cuda", "dtype": "bfloat16"}})
    cfg = load_config(path, device="cpu", dtype="float32", env={})
    assert (cfg.backend.device, cfg.backend.dtype) == ("cpu", "float32")


def test_bad_flag_value_is_reported_as_command_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^command line: backend.device: must be one of"):
        load_config(None, device="tpu", env={})
    with pytest.raises(ConfigError, match=r"^command line: sft.max_length: must be > 1"):
        load_config(None, sets=["sft.max_length=1"], env={})


def test_any_backend_name_is_accepted_and_checked_when_created(tmp_path: Path) -> None:
    from mindprint_interfaces import BackendNotFoundError
    from mindprint_trainer.commands import make_backend

    cfg = load_config(write(tmp_path, {"backend": {"type": "my-backend"}}), env={})
    assert cfg.backend.type == "my-backend"  # a third-party backend's name is not rejected by the file's schema
    assert load_config(None, env={"MINDPRINT_BACKEND": "jax"}).backend.type == "jax"
    with pytest.raises(BackendNotFoundError, match="Unknown backend: my-backend"):
        make_backend(cfg)


def test_set_overrides(tmp_path: Path) -> None:
    cfg = load_config(None, sets=["sft.learning_rate=1e-4", "pipeline.max_retries_per_topic=0"], env={})
    assert cfg.sft_config().learning_rate == 1e-4
    assert cfg.pipeline.max_retries_per_topic == 0
    assert parse_set(["a.b.c=[1, 2]"]) == {"a": {"b": {"c": [1, 2]}}}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_set(["nonsense"])


def test_resolved_config_round_trips() -> None:
    cfg = load_config(None, backend="mlx", env={})
    again = TrainerConfig.from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


def test_sections_are_the_schema_classes() -> None:
    from mindprint_interfaces import BackendConfig, CurriculumConfig, DPOConfig, GenerationConfig, SFTConfig

    cfg = load_config(None, env={})
    assert isinstance(cfg.backend, BackendConfig)
    assert (type(cfg.sft), type(cfg.dpo), type(cfg.generation), type(cfg.pipeline)) == (
        SFTConfig, DPOConfig, GenerationConfig, CurriculumConfig)


def test_device_flag_takes_every_schema_device() -> None:
    from mindprint_interfaces.configs import DEVICES

    for device in DEVICES:
        assert load_config(None, device=device, env={}).backend.device == device
