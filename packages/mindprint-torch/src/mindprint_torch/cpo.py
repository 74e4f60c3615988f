"""CPO and SimPO through TRL's ``CPOTrainer`` (``trl.experimental.cpo`` in TRL 1.16), on the data layer's tokens.

Same row layout and hooks as :mod:`.orpo`. ``loss_type`` sigmoid / hinge / ipo / simpo and
``cpo_alpha`` / ``simpo_gamma`` / ``label_smoothing`` are passed to TRL as they are; TRL's AlphaPO
(``alpha``) is not offered. The compact LM head does not apply, for the reason given in :mod:`.orpo`
(TRL logs ``logits/*`` over every position of the padded logits).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mindprint_interfaces import CPOConfig
from mindprint_interfaces.protocols import TrainerCallback

from ._compat import trl as trl_compat
from .model import PyTorchModel
from .orpo import RefFreeTrainerBase, ref_free_args


class PyTorchCPOTrainer(RefFreeTrainerBase[CPOConfig]):
    """Trainer protocol: LoRA CPO / SimPO with TRL's losses and metric names; no reference model."""

    method = "cpo"

    def __init__(self, model: PyTorchModel, config: CPOConfig | Mapping[str, Any],
                 callbacks: Sequence[TrainerCallback] = ()) -> None:
        super().__init__(model, CPOConfig.coerce(config), callbacks)

    def _trl_args(self) -> Any:
        _, config_class = trl_compat.experimental_trainer(self.method)
        cfg = self.config
        return config_class(**ref_free_args(cfg, self._model), loss_type=cfg.loss_type,
                            label_smoothing=cfg.label_smoothing, cpo_alpha=cfg.cpo_alpha,
                            simpo_gamma=cfg.simpo_gamma, alpha=0.0)
