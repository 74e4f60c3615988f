"""mindprint-pipeline: curriculum SFT -> evaluate -> DPO, topic by topic, on any mindprint backend.

Depends on mindprint-interfaces only; it never imports torch, mlx, transformers or numpy. The
backend (``mindprint_torch`` / ``mindprint_mlx``) is passed in or created from the registry.
"""

from mindprint_interfaces import Evaluator

from .checkpoint import CheckpointError, PipelineState, load_state, save_state
from .config import PipelineConfig
from .curriculum import (
    Chapter,
    Curriculum,
    Topic,
    Unit,
    UnmatchedPair,
    build_curriculum,
    id_dirname,
    load_curriculum,
)
from .evaluation import DefaultEvaluator, VoiceMarkers, rouge_l_f1
from .events import PREFERENCE_STAGES, BasePipelineCallback, PipelineCallback, PipelineInterrupted, Stage
from .pipeline import DPOPipeline
from .progress import AttemptResult, ChapterProgress, PipelineResult, TopicProgress, UnitProgress

__version__ = "0.1.0"

__all__ = [
    "AttemptResult", "BasePipelineCallback", "Chapter", "ChapterProgress", "CheckpointError", "Curriculum",
    "DPOPipeline", "DefaultEvaluator", "Evaluator", "PipelineCallback", "PipelineConfig", "PipelineInterrupted",
    "PREFERENCE_STAGES", "PipelineResult", "PipelineState", "Stage", "Topic", "TopicProgress", "Unit",
    "UnitProgress", "UnmatchedPair",
    "VoiceMarkers", "build_curriculum", "id_dirname", "load_curriculum", "load_state", "rouge_l_f1", "save_state",
]
