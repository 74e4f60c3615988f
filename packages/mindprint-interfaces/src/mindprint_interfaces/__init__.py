"""mindprint-interfaces: the contracts every mindprint package shares.

Protocols, configs, results, errors, the data layer and the backend registry. Standard
library only: importing this never pulls in torch, mlx, transformers or numpy.
"""

from .backend_spec import BackendSpec
from .config_base import ConfigBase, FieldDoc, field_docs
from .configs import (
    AdapterConfig,
    BackendConfig,
    CPOConfig,
    CurriculumConfig,
    DPOConfig,
    GenerationConfig,
    KTOConfig,
    ORPOConfig,
    QuantizationConfig,
    SFTConfig,
    TrainConfigBase,
)
from .errors import (
    AdapterFormatError,
    BackendMismatchError,
    BackendNotFoundError,
    ConfigError,
    DataIssue,
    DataValidationError,
    DeviceUnavailableError,
    MergeVerificationError,
    MindprintError,
    TrainingError,
)
from .hf_tokenizer import HFTokenizer
from .protocols import (
    AdapterManager,
    Backend,
    BaseCallback,
    DeviceManager,
    Evaluator,
    Model,
    Tokenizer,
    Trainer,
    TrainerCallback,
)
from .registry import BackendRegistry, create_backend, resolve_backend_name
from .results import ForwardOutput, Generation, TrainingResult

__version__ = "0.1.0"

__all__ = [
    "AdapterConfig", "AdapterFormatError", "AdapterManager", "Backend", "BackendConfig", "BackendMismatchError",
    "BackendNotFoundError", "BackendRegistry", "BackendSpec", "BaseCallback", "ConfigBase", "ConfigError",
    "CurriculumConfig", "DPOConfig", "DataIssue", "DataValidationError", "DeviceManager", "DeviceUnavailableError",
    "Evaluator", "FieldDoc", "ForwardOutput", "Generation",
    "GenerationConfig", "HFTokenizer", "MergeVerificationError", "MindprintError", "Model", "QuantizationConfig", "SFTConfig", "Tokenizer", "Trainer",
    "TrainConfigBase", "TrainerCallback", "TrainingError", "TrainingResult", "create_backend", "field_docs",
    "resolve_backend_name",
]
__all__ += ["CPOConfig", "KTOConfig", "ORPOConfig"]
