"""DPOPipeline: curriculum training, topic by topic, on any backend (through the protocols only).

Per topic (docs/architecture.md; the package README has the full flow)::

    load base (+ the previous topic's adapter)
    SFT (+ sft_replay_per_topic records of earlier topics) -> evaluate -> DPO if accuracy >= accuracy_threshold and voice < dpo_trigger_threshold
         and the topic has preference pairs -> re-evaluate
    passed if (accuracy + voice) / 2 >= topic_pass_threshold, else retry (a real retrain from the
    topic's starting adapter, with another seed) up to max_retries_per_topic, then failed

After every topic the adapter and ``state.json`` are checkpointed atomically (and, inside a topic, the attempt in
progress and the stages it finished); with ``save_steps`` in a stage's section its trainer also writes step
checkpoints, so ``resume`` continues an interrupted stage from its newest one (:mod:`.stage_resume`). After every unit
(``merge_after_unit``) the unit's adapter is merged into the base through the backend's verified
``save_pretrained`` and the next unit trains fresh adapters on the merged model.

This module never imports torch, mlx, transformers or numpy: the backend does all tensor work.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mindprint_interfaces import Backend, BackendMismatchError, ConfigError, Evaluator, Model, create_backend
from mindprint_interfaces.fileio import atomic_write_json, recover_tree
from mindprint_interfaces.phases import phase
from mindprint_interfaces.registry import BackendRegistry, canonical_name

from .checkpoint import CheckpointError, PipelineState, check_compatible, load_state, save_state
from .config import PipelineConfig
from .curriculum import Curriculum, RecordsInput, Topic, id_dirname, load_curriculum
from .evaluation import DefaultEvaluator, check_scores
from .events import PipelineCallback, PipelineInterrupted, StepForwarder
from .progress import AttemptResult, ChapterProgress, PipelineResult, TopicProgress, UnitProgress
from .stage_resume import resume_point

log = logging.getLogger("mindprint_pipeline")

RESULT_FILE = "pipeline_result.json"
SEED_STRIDE = 1000  # seed of (topic i, attempt a) = config.seed + i * SEED_STRIDE + a


class _Stop(PipelineInterrupted):
    """Internal: ``stop_after_topics`` reached."""


def is_mindprint_model(obj: object) -> bool:
    """True for a backend Model (has ``backend_name`` and the Model protocol's methods)."""
    return isinstance(obj, Model)


def _slug(text: str) -> str:
    """One directory name for a unit or a whole topic id (injective: see :func:`id_dirname`)."""
    return id_dirname(text)


def _truncation(stage: str, metrics: Mapping[str, Any], lines: Sequence[int]) -> dict[str, float]:
    """``sft_truncated`` / ``sft_truncated_longest_chars`` ... of a trainer result (only what was cut).

    The trainer numbers the topic's records 1, 2, ... as it received them; ``lines`` maps them back to where
    the user finds them (the file line of a JSONL record, the 1-based row of a dataset), so
    ``*_truncated_longest_line`` names the record in the curriculum's input, not in the topic's slice of it."""
    keys = ("truncated", "dropped", "truncated_longest_line", "truncated_longest_chars")
    cut = {f"{stage}_{k}": float(metrics[k]) for k in keys if metrics.get(k)}
    index = int(cut.get(f"{stage}_truncated_longest_line", 0))
    if 0 < index <= len(lines) and lines[index - 1]:
        cut[f"{stage}_truncated_longest_line"] = float(lines[index - 1])
    return cut


def trainer_topic_id(topic_id: str) -> str:
    """The topic's adapter sub-directory: one injective directory name per part."""
    return "/".join(id_dirname(part) for part in topic_id.split("/"))


@dataclass
class _Session:
    """The state of one ``train_curriculum`` call."""

    curriculum: Curriculum
    state: PipelineState
    checkpoint_dir: Path
    started: float
    elapsed_before: float
    stop_after: int | None = None
    topics_run: int = 0


class DPOPipeline:
    """Curriculum SFT -> evaluate -> DPO on a backend; the ``DPOPipeline`` API of mindprint 0.1.

    - ``DPOPipeline(config=PipelineConfig(backend_type="pytorch", model_path=...))``: the backend is
      created from the config (``MINDPRINT_BACKEND`` is honoured when ``backend_type`` is None);
    - ``DPOPipeline(model=m, config=..., backend=b)``: a model already loaded by backend ``b``;
    - legacy mode: ``DPOPipeline(model=hf_model, tokenizer=hf_tokenizer, config=PipelineConfig())``
      wraps a transformers model through the registry's ``pytorch`` backend (``wrap``).
    """

    def __init__(self, model: Any = None, tokenizer: Any = None,
                 config: PipelineConfig | Mapping[str, Any] | None = None, backend: Backend | None = None, *,
                 evaluator: Evaluator | None = None, callbacks: Sequence[PipelineCallback] = ()) -> None:
        self.config = PipelineConfig.coerce(config)
        self.backend, self.model = self._resolve_backend(model, tokenizer, backend)
        self.evaluator: Evaluator = evaluator if evaluator is not None else self._default_evaluator()
        self.callbacks: list[PipelineCallback] = list(callbacks)
        self.curriculum: Curriculum | None = None
        self._session: _Session | None = None

    # -- setup -------------------------------------------------------------------------------------
    def _wrapping_backend(self, model: Any) -> str:
        """The registered backend that wraps ``model``'s library (``BackendSpec.wraps``): the configured one, or
        the first in the registry's preference order."""
        library = type(model).__module__.split(".")[0]
        if self.config.backend_type:
            name = canonical_name(self.config.backend_type)
            if not BackendRegistry.spec(name).can_wrap(model):
                raise ConfigError(f"backend_type {self.config.backend_type!r} cannot wrap a {library} model; "
                                  "use backend_type=None (a backend that wraps it is then chosen) or load the "
                                  "model through the backend", key="backend_type")
            return name
        for spec in BackendRegistry.specs():
            if spec.can_wrap(model):
                return spec.name
        raise ConfigError(f"no installed backend wraps a {library} model ({type(model).__name__}); load the model "
                          "through a backend instead", key="backend_type")

    def _resolve_backend(self, model: Any, tokenizer: Any, backend: Backend | None) -> tuple[Backend, Model | None]:
        cfg = self.config
        legacy = model is not None and not is_mindprint_model(model)
        if legacy:
            if tokenizer is None:
                raise ConfigError("legacy mode (a transformers model passed in) needs its tokenizer too: "
                                  "DPOPipeline(model=model, tokenizer=tokenizer, config=...)", key="tokenizer")
            if backend is None:
                backend = create_backend(self._wrapping_backend(model), device=cfg.device, dtype=cfg.dtype,
                                         seed=cfg.seed)
            wrap = getattr(backend, "wrap", None)
            if not callable(wrap):
                raise ConfigError(f"the {getattr(backend, 'name', type(backend).__name__)} backend has no "
                                  "wrap(model, tokenizer) method, so legacy mode (a transformers model passed "
                                  "in) is not available; load the model through the backend instead",
                                  key="backend_type")
            wrapped = wrap(model, tokenizer)
            if not is_mindprint_model(wrapped):
                raise TypeError(f"{type(backend).__name__}.wrap() returned {type(wrapped).__name__}, not a Model")
            log.info("legacy mode: wrapped %s through the %s backend", type(model).__name__, backend.name)
            return backend, wrapped
        if tokenizer is not None:
            log.warning("tokenizer is only used in legacy mode (a transformers model passed in); ignoring it")
        if backend is not None:
            if model is not None and model.backend_name != backend.name:
                raise BackendMismatchError(f"a model of the {backend.name} backend",
                                           f"a model of the {model.backend_name} backend")
            return backend, model
        chosen: str | None = cfg.backend_type
        if model is not None and chosen is None:
            chosen = model.backend_name
        return create_backend(chosen, device=cfg.device, dtype=cfg.dtype, seed=cfg.seed), model

    def _default_evaluator(self) -> DefaultEvaluator:
        markers = self.config.markers_file
        if markers is not None and not Path(markers).is_file() and not Path(markers).is_absolute():
            candidate = Path(self.config.data_dir) / markers
            if candidate.is_file():
                markers = str(candidate)
        return DefaultEvaluator.from_files(markers, generation=self.config.generation_config(),
                                           max_records=self.config.eval_max_records)

    # -- data --------------------------------------------------------------------------------------
    def load_data(self, sft_data: RecordsInput | None = None, preference_data: RecordsInput | None = None,
                  quiz_data: RecordsInput | None = None) -> Curriculum:
        """Read and group the data (``data_dir`` files when not passed); every data error is raised here."""
        self.curriculum = load_curriculum(sft_data, preference_data, self.config.data_dir, quiz_data)
        for pair in self.curriculum.unmatched_preferences:
            log.warning("preference pair (line %d) matches no topic: %s", pair.line, pair.reason)
        return self.curriculum

    # -- public training API -----------------------------------------------------------------------
    def train_curriculum(self, sft_data: RecordsInput | None = None, preference_data: RecordsInput | None = None,
                         *, quiz_data: RecordsInput | None = None, resume: bool = False,
                         resume_from_checkpoint: str | Path | None = None,
                         stop_after_topics: int | None = None, curriculum: Curriculum | None = None) -> PipelineResult:
        """Train every unit, chapter and topic in order and return the result.

        ``curriculum`` is one :meth:`load_data` returned already (a caller that validated the data before
        any model work, so it is not read twice); the data arguments are then left out.
        ``resume=True`` continues from ``checkpoint_dir`` (a fresh start when it holds no
        checkpoint); ``resume_from_checkpoint=dir`` continues from that directory (which must hold
        one). ``stop_after_topics=n`` stops cleanly after n topics were trained in this call and
        returns a partial result (``completed=False``), as does a callback raising
        :class:`PipelineInterrupted`.
        """
        if stop_after_topics is not None and stop_after_topics < 1:
            raise ConfigError(f"stop_after_topics: must be >= 1, got {stop_after_topics}", key="stop_after_topics")
        if curriculum is None:
            curriculum = self.load_data(sft_data, preference_data, quiz_data)
        elif sft_data is not None or preference_data is not None or quiz_data is not None:
            raise ConfigError("train_curriculum: pass either the data or a loaded curriculum, not both",
                              key="curriculum")
        session = self._start_session(curriculum, resume=resume, resume_from_checkpoint=resume_from_checkpoint)
        session.stop_after = stop_after_topics
        completed = False
        try:
            for unit in curriculum.units:
                self._run_unit(session, unit.name)
            completed = True
        except PipelineInterrupted as exc:
            log.info("pipeline stopped: %s", exc or type(exc).__name__)
        result = self._result(session, completed=completed)
        atomic_write_json(Path(self.config.output_dir) / RESULT_FILE, result.to_dict())
        return result

    def train_unit(self, unit: str, *, resume: bool = False) -> UnitProgress:
        """Train (the unfinished topics of) one unit and merge it; needs :meth:`load_data` first."""
        session = self._session or self._start_session(self._require_curriculum(), resume=resume)
        return self._run_unit(session, unit)

    def train_topic(self, topic_id: str, *, resume: bool = False) -> TopicProgress:
        """Train one topic (with retries) from the current base and adapter; needs :meth:`load_data` first."""
        session = self._session or self._start_session(self._require_curriculum(), resume=resume)
        topic = session.curriculum.topic(topic_id)
        return self._run_topic(session, topic)

    # -- session -----------------------------------------------------------------------------------
    def _require_curriculum(self) -> Curriculum:
        if self.curriculum is None:
            self.load_data()
        assert self.curriculum is not None
        return self.curriculum

    def _start_session(self, curriculum: Curriculum, *, resume: bool,
                       resume_from_checkpoint: str | Path | None = None) -> _Session:
        ckpt = Path(resume_from_checkpoint) if resume_from_checkpoint is not None else self.config.checkpoint_path
        for root in dict.fromkeys((ckpt, Path(self.config.output_dir))):
            recover_tree(root)  # finish interrupted saves, drop temporaries of killed runs
        fingerprint = curriculum.fingerprint()
        train_cfg = self.config.training_fingerprint()
        state: PipelineState | None = None
        if resume or resume_from_checkpoint is not None:
            state = load_state(ckpt)
            if state is None and resume_from_checkpoint is not None:
                raise CheckpointError(f"{ckpt}: no checkpoint (state.json) to resume from")
            if state is None:
                log.info("resume: no checkpoint in %s, starting from the beginning", ckpt)
            else:
                check_compatible(state, fingerprint=fingerprint, config=train_cfg, source=str(ckpt))
                log.info("resume: %d/%d topics already done (checkpoint %s)", len(state.topics),
                         len(curriculum.topics), ckpt)
        if state is None:
            state = PipelineState(fingerprint, train_cfg, self._initial_base(ckpt), backend=self.backend.name)
            save_state(ckpt, state)
        self._session = _Session(curriculum, state, ckpt, time.monotonic(), state.elapsed_seconds)
        return self._session

    def _initial_base(self, ckpt: Path) -> str:
        """A directory holding the starting model (every topic attempt reloads from disk)."""
        if self.model is None:
            if not self.config.model_path:
                raise ConfigError("no model: pass model= to DPOPipeline or set model_path in the config",
                                  key="model_path")
            return self.config.model_path
        if self.config.model_path and not self.model.has_adapter():
            return self.config.model_path
        path = ckpt / "base"
        log.info("saving the passed-in model to %s (topics reload it from there)", path)
        return str(self.model.save_pretrained(path))

    def _save(self, session: _Session) -> None:
        session.state.elapsed_seconds = session.elapsed_before + (time.monotonic() - session.started)
        save_state(session.checkpoint_dir, session.state)

    # -- units and topics --------------------------------------------------------------------------
    def _run_unit(self, session: _Session, unit_name: str) -> UnitProgress:
        unit = session.curriculum.unit(unit_name)
        state = session.state
        worked = False
        for topic in unit.topics:
            if topic.id in state.topics:
                continue
            worked = True
            self._run_topic(session, topic)
        if self.config.merge_after_unit and unit.name not in state.merged_units:
            worked = True
            started = time.monotonic()
            merged = self._merge(state, unit.name)
            state.merged_units[unit.name] = merged
            state.base_model_path = merged
            state.adapter_path = None
            state.unit_times[unit.name] = state.unit_times.get(unit.name, 0.0) + time.monotonic() - started
            self._save(session)
        progress = self._unit_progress(session, unit.name)
        if worked:
            for cb in self.callbacks:
                cb.on_unit_end(progress)
        return progress

    def _merge(self, state: PipelineState, unit: str) -> str:
        target = Path(self.config.output_dir) / "merged" / _slug(unit)
        if state.adapter_path is None:
            log.info("unit %s: no adapter to merge; %s stays the base", unit, state.base_model_path)
            return state.base_model_path
        model = self._load(state.base_model_path, state.adapter_path)
        log.info("unit %s: merging %s into %s (verified by the backend)", unit, state.adapter_path, target)
        with phase("merge", detail=f"unit {unit} into {target} (verified)"):
            return str(model.save_pretrained(target))

    def _run_topic(self, session: _Session, topic: Topic) -> TopicProgress:
        state = session.state
        progress = self._train_topic(session, topic, state.base_model_path, state.adapter_path)
        state.topics[topic.id] = progress
        state.current = None
        state.adapter_path = progress.adapter_path
        unit = topic.unit
        state.unit_times[unit] = state.unit_times.get(unit, 0.0) + progress.time_seconds
        self._save(session)  # checkpoint first: a callback may stop the run
        session.topics_run += 1
        for cb in self.callbacks:
            cb.on_topic_end(progress)
        if session.stop_after is not None and session.topics_run >= session.stop_after:
            raise _Stop(f"stop_after_topics={session.stop_after} reached")
        return progress

    def _train_topic(self, session: _Session, topic: Topic, base: str, start_adapter: str | None) -> TopicProgress:
        cfg = self.config
        state = session.state
        progress = TopicProgress(topic.id, topic.index)
        log.info("topic %s (%d SFT, %d pairs)", topic.id, len(topic.sft), len(topic.preferences))
        current = state.current if state.current and state.current.get("topic") == topic.id else None
        first = 0
        if current is not None:  # interrupted inside this topic: its finished attempts stand, the attempt continues
            progress.history = [AttemptResult.from_dict(h) for h in current.get("history", [])]
            progress.attempts = len(progress.history)
            first = int(current.get("attempt", len(progress.history)))
            log.info("resume: topic %s continues attempt %d (stages done: %s)", topic.id, first,
                     ", ".join(current.get("stages") or {}) or "none")
        for attempt in range(first, cfg.max_retries_per_topic + 1):
            for cb in self.callbacks:
                cb.on_topic_start(topic.id, attempt)
            resumed = dict(current.get("stages") or {}) if current is not None and attempt == first else None
            state.current = {"topic": topic.id, "attempt": attempt, "stages": dict(resumed or {}),
                             "history": [dataclasses.asdict(h) for h in progress.history]}
            self._save(session)  # the attempt in progress: a resume continues it
            adapter_dir = (session.checkpoint_dir / "adapters" / f"{topic.index:03d}-{_slug(topic.id)}"
                           / f"attempt-{attempt}")
            result = self._attempt(session, topic, attempt, base, start_adapter, adapter_dir, resumed)
            progress.history.append(result)
            progress.attempts = attempt + 1
            log.info("topic %s attempt %d: accuracy %.3f voice %.3f score %.3f%s%s", topic.id, attempt,
                     result.accuracy, result.voice, result.score,
                     f" ({cfg.preference_method})" if result.dpo_applied else "",
                     " passed" if result.passed else (f" error: {result.error}" if result.error else ""))
            if result.passed:
                break
        progress.time_seconds = sum(h.time_seconds for h in progress.history)
        trained = [h for h in progress.history if h.adapter_path is not None]
        best = next((h for h in trained if h.passed), None) or max(trained, key=lambda h: h.score, default=None)
        progress.status = "passed" if best is not None and best.passed else "failed"
        if best is None:  # every attempt failed to train: continue from the adapter the topic started with
            progress.adapter_path = start_adapter
            progress.error = progress.history[-1].error
            return progress
        progress.accuracy, progress.voice, progress.score = best.accuracy, best.voice, best.score
        progress.dpo_applied, progress.sft_loss, progress.dpo_loss = best.dpo_applied, best.sft_loss, best.dpo_loss
        progress.adapter_path = best.adapter_path
        return progress

    def _stage_done(self, session: _Session, stage: str, record: dict[str, Any]) -> None:
        """Record a finished stage of the attempt in progress (``state.current``) and checkpoint the state."""
        current = session.state.current
        if current is not None:
            current.setdefault("stages", {})[stage] = record
            self._save(session)

    def _attempt(self, session: _Session, topic: Topic, attempt: int, base: str, start_adapter: str | None,
                 adapter_dir: Path, resumed: Mapping[str, Any] | None = None) -> AttemptResult:
        """One attempt; ``resumed`` (the stages this attempt finished before a resume) continues an interrupted
        one: finished stages are not trained again, the interrupted stage continues from its step checkpoint."""
        cfg = self.config
        seed = cfg.seed + topic.index * SEED_STRIDE + attempt
        result = AttemptResult(attempt=attempt, seed=seed)
        started = time.monotonic()
        resuming = resumed is not None
        sft_done: dict[str, Any] | None = dict(resumed["sft"]) if resumed and resumed.get("sft") else None
        try:
            run_dir = Path(cfg.output_dir) / "runs" / _slug(topic.id) / f"attempt-{attempt}"
            cut: dict[str, float] = {}
            eval_records = topic.eval_records(cfg.eval_max_records)
            scores: Mapping[str, float] | None = None
            if sft_done is not None:  # SFT of this attempt finished before the interruption: its adapter is on disk
                log.info("resume: topic %s attempt %d: SFT finished before (%s)", topic.id, attempt, sft_done["adapter"])
                model = self._load(base, str(sft_done["adapter"]))
                result.sft_loss, result.sft_samples = float(sft_done["loss"]), int(sft_done["samples"])
                cut.update(sft_done.get("cut") or {})
                scores = sft_done.get("scores")
            else:
                model = self._load(base, start_adapter)  # a retry really restarts from the topic's starting state
            if cfg.sft_before_preference and sft_done is None:
                sft = self.backend.create_sft_trainer(model, cfg.sft_config(seed=seed, output_dir=run_dir / "sft"),
                                                      callbacks=[StepForwarder("sft", topic.id, self.callbacks)])
                sft_dir = run_dir / "sft" / trainer_topic_id(topic.id)
                sft_result = sft.train(self._sft_records(topic), adapter_dir=sft_dir, resume_from_checkpoint=resume_point(
                    sft_dir, resuming=resuming, what=f"topic {topic.id} attempt {attempt} SFT"))
                result.sft_loss, result.sft_samples = sft_result.final_loss, sft_result.samples_trained
                cut.update(_truncation("sft", sft_result.metrics, [ex.line for ex in topic.sft]))
                if not sft_result.success or not math.isfinite(sft_result.final_loss):
                    result.error = f"SFT failed: {sft_result.error_message or f'loss {sft_result.final_loss}'}"
                    return result
                model = sft.get_model()
                sft_done = {"loss": result.sft_loss, "samples": result.sft_samples, "cut": dict(cut),
                            "adapter": sft_result.adapter_path}
                self._stage_done(session, "sft", sft_done)
            if scores is None:
                with phase("evaluate", detail=f"{topic.id} after {'SFT' if cfg.sft_before_preference else 'loading'}"):
                    scores = self.evaluator.evaluate(model, eval_records)
                if sft_done is not None:  # a resume after this point does not evaluate again
                    self._stage_done(session, "sft", {**sft_done, "scores": {k: float(v) for k, v in scores.items()}})
            accuracy, voice = check_scores(scores, self.evaluator)
            result.accuracy_after_sft, result.voice_after_sft = accuracy, voice
            # Without SFT (reference-free ORPO/CPO) the preference stage is the topic's training: it always runs.
            triggered = (not cfg.sft_before_preference
                         or (accuracy >= cfg.accuracy_threshold and voice < cfg.dpo_trigger_threshold))
            if triggered and topic.preferences:
                method = cfg.preference_method
                # the stage is tagged with the method's name (events, metrics.jsonl, summary, plots); the
                # attempt's fields keep their dpo_* names (checkpoints written before stay readable)
                pref = self.backend.create_trainer(method, model,
                                                   cfg.preference_config(seed=seed, output_dir=run_dir / method),
                                                   callbacks=[StepForwarder(method, topic.id, self.callbacks)])
                pref_dir = run_dir / method / trainer_topic_id(topic.id)
                pref_result = pref.train(topic.preference_records(), adapter_dir=pref_dir,
                                         resume_from_checkpoint=resume_point(
                                             pref_dir, resuming=resuming,
                                             what=f"topic {topic.id} attempt {attempt} {method.upper()}"))
                result.dpo_applied = True
                result.dpo_loss, result.dpo_samples = pref_result.final_loss, pref_result.samples_trained
                cut.update(_truncation("dpo", pref_result.metrics, [p.line for p in topic.preferences]))  # dpo_*: the preference stage's, any method
                if not pref_result.success or not math.isfinite(pref_result.final_loss):
                    result.error = (f"{method.upper()} failed: "
                                    f"{pref_result.error_message or f'loss {pref_result.final_loss}'}")
                    return result
                model = pref.get_model()
                with phase("evaluate", detail=f"{topic.id} after {method.upper()}"):
                    scores = self.evaluator.evaluate(model, eval_records)
                accuracy, voice = check_scores(scores, self.evaluator)
            result.accuracy, result.voice = accuracy, voice
            result.metrics = {k: float(v) for k, v in scores.items()} | cut
            result.score = (accuracy + voice) / 2
            if not math.isfinite(result.score):  # never carry forward (or pass) what cannot be scored
                result.error = f"non-finite evaluation score (accuracy {accuracy}, voice {voice})"
                return result
            result.passed = result.score >= cfg.topic_pass_threshold
            with phase("save adapter", detail=str(adapter_dir)):
                result.adapter_path = str(model.save_adapter(adapter_dir))
            return result
        finally:
            result.time_seconds = time.monotonic() - started

    def _sft_records(self, topic: Topic) -> list[dict[str, Any]]:
        """The topic's SFT records, then ``sft_replay_per_topic`` records of the earlier topics."""
        records = topic.sft_records()
        if self.config.sft_replay_per_topic:
            records += self._require_curriculum().replay_records(topic, self.config.sft_replay_per_topic)
        return records

    def _load(self, base: str, adapter: str | None) -> Model:
        with phase("load model", detail=base if adapter is None else f"{base} + {adapter}"):
            if adapter is None:
                return self.backend.load_model(base)
            return self.backend.load_model(base, adapter_path=adapter)

    # -- results -----------------------------------------------------------------------------------
    def _unit_progress(self, session: _Session, unit_name: str) -> UnitProgress:
        unit = session.curriculum.unit(unit_name)
        done = session.state.topics
        chapters = [
            ChapterProgress(unit.name, chapter.name,
                            [done.get(t.id) or TopicProgress(t.id, t.index) for t in chapter.topics])
            for chapter in unit.chapters
        ]
        return UnitProgress(unit.name, chapters, session.state.merged_units.get(unit.name),
                            session.state.unit_times.get(unit.name, 0.0))

    def _result(self, session: _Session, *, completed: bool) -> PipelineResult:
        state = session.state
        return PipelineResult(
            units=[self._unit_progress(session, u.name) for u in session.curriculum.units],
            total_time_seconds=session.elapsed_before + (time.monotonic() - session.started),
            completed=completed,
            final_model_path=state.base_model_path,
            final_adapter_path=state.adapter_path,
            unmatched_preferences=[p.to_dict() for p in session.curriculum.unmatched_preferences],
            backend=self.backend.name,
        )
