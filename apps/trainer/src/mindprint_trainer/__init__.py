"""mindprint-trainer: the ``mindprint`` command (curriculum LoRA fine-tuning, SFT + DPO, on PyTorch or MLX)."""

__version__ = "0.1.0"
