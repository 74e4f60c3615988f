"""What every benchmark job shares: its spec, the fixed data tokenized once, and the loss checks.

The loss check is the same for every side: before and after training, on the first
``eval_n`` records of the fixed sets, with the same maths —

* SFT: token-mean cross-entropy over completion tokens;
* DPO: mean sigmoid DPO loss (beta from the spec) of the trained policy against the base model's
  sequence log-probs (the reference every side uses here: the initial policy = the base, since
  LoRA starts as the identity), plus the pairwise reward accuracy. ORPO and KTO rows use the same check on
  the same pairs (one yardstick for every preference method; not each method's own training loss).

Every side starts from the same initial adapter: mindprint's backends draw it with
:mod:`mindprint_kit.lora_init` (PEFT's initialisation in numpy, from the spec's seed), and the raw peers
overwrite their library's own draw with the same weights in their set-up, before the timed steps
(``raw_trl.kit_initial_adapter``, ``raw_mlx_lm.set_initial_weights``; not timed, not part of what a user of the
raw library would write). Training losses still differ step by step between sides because each raw library
orders its batches its own way (mlx-lm-lora's ``order: mindprint`` variant excepted); these fixed-set losses
are comparable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mindprint_interfaces.data import (
    IGNORE_INDEX,
    TokenizedExample,
    TokenizedPair,
    as_preference_pairs,
    as_sft_examples,
    tokenize_preferences,
    tokenize_sft,
)

from . import data

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
PAIRED_TASKS = ("dpo", "orpo")  # a step's records are pairs: two sequences each


@dataclass
class JobSpec:
    name: str
    backend: str  # "torch" | "mlx"
    task: str  # "sft" | "dpo" | "orpo" | "kto" (the preference tasks train on the same pairs)
    side: str  # "mindprint" | "peer"
    variant: str  # which implementation / configuration (see jobs.py)
    model_dir: str
    work_dir: str
    steps: int = 20  # timed steps
    warmup: int = 2
    batch_size: int = 2  # sequences (SFT), pairs (DPO, ORPO) or unpaired records (KTO) per step
    max_length: int = 256
    lr: float = 2e-4
    beta: float = 0.1
    seed: int = 42
    lora_r: int = 8
    lora_alpha: float = 16.0
    max_grad_norm: float = 0.0
    eval_n: int = 16
    threads: int = 2
    amortise_over: int = 100
    device: str = "cpu"  # --device: cpu | cuda | mps (MLX: mps = Metal)
    dtype: str = "float32"  # the run's dtype (bf16 on accelerators); a job's options["dtype"] overrides it
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def total_steps(self) -> int:
        return self.steps + self.warmup

    @property
    def sequences_per_step(self) -> int:
        return self.batch_size * (2 if self.task in PAIRED_TASKS else 1)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_file(cls, path: str | Path) -> JobSpec:
        return cls(**json.loads(Path(path).read_text()))


@dataclass
class Prepared:
    tokenizer: Any  # mindprint_interfaces.HFTokenizer
    sft_records: list[dict[str, Any]]
    pref_records: list[dict[str, Any]]
    sft: list[TokenizedExample]
    pairs: list[TokenizedPair]

    def train_records(self, task: str) -> list[dict[str, Any]]:
        return self.sft_records if task == "sft" else self.pref_records

    def mean_sequence_tokens(self, task: str) -> float:
        if task == "sft":
            return sum(len(e.input_ids) for e in self.sft) / len(self.sft)
        lens = [len(p.prompt_ids) + len(c) for p in self.pairs for c in (p.chosen_ids, p.rejected_ids)]
        return sum(lens) / len(lens)


def prepare(spec: JobSpec, hf_tokenizer: Any | None = None) -> Prepared:
    """Tokenize the fixed sets with the shared data layer (the tokens every side trains on)."""
    from mindprint_interfaces import HFTokenizer

    if hf_tokenizer is None:
        from transformers import AutoTokenizer

        hf_tokenizer = AutoTokenizer.from_pretrained(spec.model_dir)
    tok = HFTokenizer(hf_tokenizer)
    sft_records = data.sft_mix_records() if spec.options.get("data") == "sft_mix" else data.sft_records()
    pref_records = data.preference_records()
    sft = tokenize_sft(tok, as_sft_examples(sft_records), max_length=spec.max_length).examples
    pairs = tokenize_preferences(tok, as_preference_pairs(pref_records), max_length=spec.max_length).examples
    return Prepared(tok, sft_records, pref_records, sft, pairs)


def sequences_per_packed_row(examples: Sequence[TokenizedExample], max_length: int) -> float:
    """How many of these examples a packed row (``mindprint_kit.packing``, TRL's bfd bins) holds on average.
    Packing keeps every token, so B rows carry the real tokens of ``B x`` this many sequences on average."""
    from mindprint_kit.packing import pack_examples

    return len(examples) / len(pack_examples(examples, max_length))


def sft_loss_terms(example: TokenizedExample) -> int:
    """Number of predicted (shifted) loss tokens of an example."""
    return sum(1 for t in example.labels[1:] if t != IGNORE_INDEX)


def dpo_eval(policy: Sequence[tuple[float, float]], reference: Sequence[tuple[float, float]], beta: float) -> dict[str, float]:
    losses: list[float] = []
    correct = 0
    for (pc, pr), (rc, rr) in zip(policy, reference, strict=True):
        x = beta * ((pc - pr) - (rc - rr))
        losses.append(math.log1p(math.exp(-x)) if x > -30 else -x)  # -logsigmoid(x)
        correct += int((pc - rc) > (pr - rr))
    return {"dpo_loss": sum(losses) / len(losses), "reward_accuracy": correct / len(losses)}


def ref_summary(reference: Sequence[tuple[float, float]]) -> dict[str, float]:
    """Step-0 check for DPO: the base model's mean summed log-prob of chosen / rejected completions."""
    n = len(reference)
    return {"ref_logp_chosen": sum(c for c, _ in reference) / n, "ref_logp_rejected": sum(r for _, r in reference) / n}


# --------------------------------------------------------------------------------------- torch side
def _device(model: Any) -> Any:
    """The torch device the model's weights are on (cpu, or cuda/mps with ``--device``)."""
    return next(model.parameters()).device


def torch_sft_eval(model: Any, examples: Sequence[TokenizedExample]) -> float:
    """Token-mean completion cross-entropy of a transformers/PEFT model (one example per forward)."""
    import torch

    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for ex in examples:
            ids = torch.tensor([list(ex.input_ids)], device=_device(model))
            labels = torch.tensor(list(ex.labels[1:]), device=ids.device)
            logits = model(input_ids=ids).logits[0, :-1].float()
            total += float(torch.nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum"))
            count += int((labels != IGNORE_INDEX).sum())
    model.train(was_training)
    return total / count


def torch_pair_logps(model: Any, pairs: Sequence[TokenizedPair]) -> list[tuple[float, float]]:
    import torch

    out: list[tuple[float, float]] = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for p in pairs:
            sums: list[float] = []
            for completion in (p.chosen_ids, p.rejected_ids):
                ids = list(p.prompt_ids) + list(completion)
                logits = model(input_ids=torch.tensor([ids], device=_device(model))).logits[0, :-1].float()
                logp = torch.log_softmax(logits, dim=-1)
                targets = torch.tensor(ids[1:], device=logits.device)
                token_lp = logp.gather(-1, targets[:, None])[:, 0]
                sums.append(float(token_lp[len(p.prompt_ids) - 1:].sum()))
            out.append((sums[0], sums[1]))
    model.train(was_training)
    return out


# ----------------------------------------------------------------------------------------- mlx side
def mlx_sft_eval(model: Any, examples: Sequence[TokenizedExample]) -> float:
    import mlx.core as mx
    from mlx import nn

    total, count = 0.0, 0
    for ex in examples:
        ids = mx.array([list(ex.input_ids)])
        labels = list(ex.labels[1:])
        mask = mx.array([[1.0 if t != IGNORE_INDEX else 0.0 for t in labels]])
        targets = mx.array([[t if t != IGNORE_INDEX else 0 for t in labels]])
        logits = model(ids[:, :-1]).astype(mx.float32)
        ce = (nn.losses.cross_entropy(logits, targets) * mask).sum()
        total += float(ce.item())
        n_tokens: Any = mask.sum().item()
        count += int(n_tokens)
    return total / count


def mlx_pair_logps(model: Any, pairs: Sequence[TokenizedPair]) -> list[tuple[float, float]]:
    import mlx.core as mx
    from mlx import nn

    out: list[tuple[float, float]] = []
    for p in pairs:
        sums: list[float] = []
        for completion in (p.chosen_ids, p.rejected_ids):
            ids = list(p.prompt_ids) + list(completion)
            logits = model(mx.array([ids[:-1]])).astype(mx.float32)
            lp = -nn.losses.cross_entropy(logits, mx.array([ids[1:]]))[0]
            sums.append(float(lp[len(p.prompt_ids) - 1:].sum().item()))
        out.append((sums[0], sums[1]))
    return out


# ------------------------------------------------------------------------------- mindprint Model API
def mindprint_sft_eval(model: Any, examples: Sequence[TokenizedExample]) -> float:
    """Same quantity through the public ``Model.forward`` (loss = mean over labelled positions)."""
    total, count = 0.0, 0
    for ex in examples:
        out = model.forward([list(ex.input_ids)], labels=[list(ex.labels)])
        n = sft_loss_terms(ex)
        total += float(out.loss) * n
        count += n
    return total / count


def mindprint_pair_logps(model: Any, pairs: Sequence[TokenizedPair]) -> list[tuple[float, float]]:
    prompts = [list(p.prompt_ids) for p in pairs]
    chosen = model.sequence_logprobs(prompts, [list(p.chosen_ids) for p in pairs])
    rejected = model.sequence_logprobs(prompts, [list(p.rejected_ids) for p in pairs])
    return [(float(c), float(r)) for c, r in zip(chosen, rejected, strict=True)]
