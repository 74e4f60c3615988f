"""Token streaming for PyTorchModel: transformers' ``generate`` in a thread, token ids through a streamer.

The ids go through :func:`mindprint_kit.streaming.stream_text`, which applies ``generate``'s EOS and
stop-string rules; when the consumer stops early (a stop string, or it closes the iterator) a stopping
criterion ends the generation thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import torch
from transformers.generation.stopping_criteria import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from mindprint_interfaces import GenerationConfig, HFTokenizer
from mindprint_kit.streaming import stream_text

_END = object()


class StreamSource(Protocol):
    hf_model: Any

    @property
    def tokenizer(self) -> HFTokenizer: ...
    @property
    def torch_device(self) -> torch.device: ...
    @property
    def pad_id(self) -> int: ...


class _IdStreamer(BaseStreamer):
    """Puts generated token ids on a queue (the first ``put`` is the prompt and is skipped)."""

    def __init__(self) -> None:
        self.queue: queue.Queue[object] = queue.Queue()
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for t in value.reshape(-1).tolist():
            self.queue.put(int(t))

    def end(self) -> None:
        self.queue.put(_END)


class _Cancelled(StoppingCriteria):
    def __init__(self, flag: threading.Event) -> None:
        self.flag = flag

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.flag.is_set(), dtype=torch.bool, device=input_ids.device)


def stream(model: StreamSource, prompt_ids: Sequence[int], cfg: GenerationConfig) -> Iterator[str]:
    ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=model.torch_device)
    eos = model.tokenizer.eos_token_id
    streamer = _IdStreamer()
    cancel = threading.Event()
    kwargs: dict[str, Any] = {"max_new_tokens": cfg.max_new_tokens, "pad_token_id": model.pad_id,
                              "streamer": streamer, "stopping_criteria": StoppingCriteriaList([_Cancelled(cancel)])}
    if eos is not None:
        kwargs["eos_token_id"] = eos
    if cfg.temperature > 0:
        kwargs.update(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=None)
        if cfg.seed is not None:
            torch.manual_seed(cfg.seed)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with torch.no_grad():
                model.hf_model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
        except BaseException as exc:  # handed to the consumer below
            errors.append(exc)
            streamer.end()

    def tokens() -> Iterator[int]:
        while True:
            item = streamer.queue.get()
            if item is _END:
                return
            assert isinstance(item, int)
            yield item

    was_training = model.hf_model.training
    model.hf_model.eval()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield from stream_text(tokens(), model.tokenizer.decode, eos_id=eos, stops=cfg.stop)
    finally:
        cancel.set()
        thread.join()
        if was_training:
            model.hf_model.train()
    if errors:
        raise errors[0]
