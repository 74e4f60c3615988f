"""Training data from Hugging Face ``datasets``: parquet / arrow / csv / json(l) files, ``save_to_disk`` directories
and hub dataset ids resolved from the local Hugging Face cache — read with ``datasets`` into plain records
that the shared (stdlib) validators check, so a bad row is reported like a bad JSONL line, as ``row N``.

``data.sft_file`` / ``data.preference_file`` / ``--data`` name the source:

* a ``.jsonl`` file without a ``data.columns`` mapping keeps the JSONL reader (errors name ``file:line``);
* ``.parquet`` / ``.arrow`` / ``.csv`` / ``.json`` / ``.jsonl`` files: ``datasets``' packaged builders;
* a directory written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``: ``load_from_disk``
  (``data.split`` picks the split of a ``DatasetDict``);
* anything else that looks like ``owner/name``: a hub dataset, taken from the local cache only
  (``huggingface_hub.snapshot_download(local_files_only=True)`` at ``data.revision``) — nothing is downloaded;
  its files are read by the packaged builders (no dataset scripts, no remote code).

``data.columns`` maps our field names onto the dataset's (``{instruction: question, output: answer}``).
Conversational rows are accepted as TRL accepts them: ``messages``; ``prompt``/``completion`` as message
lists; ``prompt``/``chosen``/``rejected`` with message lists (see ``mindprint_interfaces.data.validate``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mindprint_interfaces import ConfigError, DataValidationError
from mindprint_interfaces.data import load_preference_jsonl, load_sft_jsonl, read_jsonl
from mindprint_interfaces.data.validate import parse_preference_records, parse_sft_records
from mindprint_interfaces.errors import DataIssue

from .config import HUB_ID

Kind = Literal["sft", "preference"]

BUILDERS = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json", ".arrow": "arrow"}
INSTALL = "pip install 'mindprint-trainer[datasets]'"


@dataclass(frozen=True)
class RowIssue(DataIssue):
    """A problem in one row of a dataset: ``line`` holds the row index + 1 (0 = the dataset as a whole)."""

    def format(self, source: str) -> str:
        where = f"{source}: row {self.line - 1}" if self.line else source
        field = f" field {self.field!r}:" if self.field else ""
        return f"{where}:{field} {self.reason}"


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise ConfigError(f"reading Hugging Face datasets needs the datasets library ({exc.name} not installed): "
                          f"{INSTALL}", key="data") from exc
    return datasets


def _is_save_to_disk(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()
                              or (path / "state.json").is_file())


def _pick_split(loaded: Any, split: str, source: str) -> Any:
    datasets = _datasets()
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ConfigError(f"{source}: no split {split!r} (splits: {', '.join(loaded)})", key="data.split")
        return loaded[split]
    return loaded


def _hub_dir(name: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(name, repo_type="dataset", revision=revision, local_files_only=True))
    except LocalEntryNotFoundError:
        at = f" at revision {revision!r}" if revision else ""
        raise ConfigError(f"dataset {name!r}{at} is not in the local Hugging Face cache (mindprint never downloads "
                          "at run time; fetch it first, e.g. `hf download --repo-type dataset NAME`)",
                          key="data") from None


def _data_files(root: Path) -> tuple[str, dict[str, list[str]]]:
    """The packaged builder and split -> files of a hub snapshot (``data/train-*.parquet`` style layouts)."""
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in BUILDERS]
    if not files:
        raise ConfigError(f"{root}: no parquet/arrow/csv/json files in the cached dataset", key="data")
    builder = BUILDERS[files[0].suffix]
    splits: dict[str, list[str]] = {}
    for p in files:
        if BUILDERS[p.suffix] != builder:
            continue
        stem = p.stem.split("-")[0].split(".")[0]
        splits.setdefault(stem if stem in ("train", "test", "validation") else "train", []).append(str(p))
    return builder, splits


def load_dataset_rows(name: str | Path, *, split: str = "train", revision: str | None = None,
                      base: Path | None = None) -> tuple[list[dict[str, Any]], str]:
    """The rows of a dataset file, a ``save_to_disk`` directory or a cached hub dataset, as plain dicts."""
    path = Path(name)
    if not path.is_absolute() and base is not None and not path.exists() and (base / path).exists():
        path = base / path
    datasets = _datasets()
    source = str(path)
    if _is_save_to_disk(path):
        ds = _pick_split(datasets.load_from_disk(str(path)), split, source)
    elif path.is_file() and path.suffix == ".arrow":
        ds = datasets.Dataset.from_file(str(path))
    elif path.is_file() and path.suffix in BUILDERS:
        ds = datasets.load_dataset(BUILDERS[path.suffix], data_files={"train": str(path)}, split="train")
    elif path.exists():
        raise ConfigError(f"{path}: not a dataset (expected .jsonl/.json/.parquet/.arrow/.csv or a save_to_disk "
                          "directory)", key="data")
    elif HUB_ID.match(str(name)):
        root = _hub_dir(str(name), revision)
        builder, files = _data_files(root)
        if split not in files:
            raise ConfigError(f"{name}: no split {split!r} (splits: {', '.join(files)})", key="data.split")
        ds = datasets.load_dataset(builder, data_files={split: files[split]}, split=split)
        source = f"{name}[{split}]"
    else:
        raise DataValidationError(str(path), [DataIssue(0, "", "file not found")])
    return [dict(row) for row in ds], source


def map_columns(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> list[dict[str, Any]]:
    """Rename the dataset's columns to ours: ``columns = {ours: theirs}``. One mapping serves every data file of
    a run (SFT, preferences, quiz), so an entry whose column a file lacks is skipped for that file; a record
    left without the fields it needs is then reported by the validators, with the keys it has."""
    if not columns:
        return [dict(r) for r in rows]
    out = []
    for row in rows:
        applied = {ours: theirs for ours, theirs in columns.items() if theirs in row}
        new = {k: v for k, v in row.items() if k not in applied.values()}
        new.update({ours: row[theirs] for ours, theirs in applied.items()})
        out.append(new)
    return out


def _drop_nulls(row: Mapping[str, Any]) -> dict[str, Any]:
    """Columnar formats give every row every column; a null means "absent" (as a missing JSON key)."""
    return {k: v for k, v in row.items() if v is not None}


def _check(rows: list[dict[str, Any]], kind: Kind, source: str) -> None:
    parse = parse_sft_records if kind == "sft" else parse_preference_records
    try:
        parse(list(enumerate(rows, start=1)), source)
    except DataValidationError as exc:
        raise DataValidationError(source, [RowIssue(i.line, i.field, i.reason) for i in exc.issues]) from None


def read_records(name: str | Path, kind: Kind, *, columns: Mapping[str, str] | None = None, split: str = "train",
                 revision: str | None = None, base: Path | None = None) -> list[dict[str, Any]]:
    """Validated records of kind ``kind`` from any supported source (every bad row/line reported at once)."""
    path = Path(name)
    if is_plain_jsonl(path, columns):
        (load_sft_jsonl if kind == "sft" else load_preference_jsonl)(path)
        return [obj for _, obj in read_jsonl(path)]
    rows, source = load_dataset_rows(name, split=split, revision=revision, base=base)
    records = [_drop_nulls(r) for r in map_columns(rows, columns or {})]
    _check(records, kind, source)
    return records


def is_plain_jsonl(name: str | Path, columns: Mapping[str, str] | None = None) -> bool:
    path = Path(name)
    return path.suffix == ".jsonl" and path.is_file() and not columns


def pipeline_input(name: str | Path, kind: Kind, *, columns: Mapping[str, str] | None = None, split: str = "train",
                   revision: str | None = None) -> str | list[dict[str, Any]]:
    """What the curriculum pipeline is given: the path of a plain JSONL file (validated here, read by the
    pipeline as before) or the validated records of any other source."""
    if is_plain_jsonl(name, columns):
        (load_sft_jsonl if kind == "sft" else load_preference_jsonl)(name)
        return str(name)
    return read_records(name, kind, columns=columns, split=split, revision=revision)
