"""No module outside a backend's ``_compat`` package touches a third-party library's private name.

A private name (``_x``, not a dunder) of torch, transformers, TRL, PEFT, accelerate, mlx, mlx-lm or
datasets can change in any release without notice; kept in one ``_compat`` module per library it has a
tested version range, a fallback and a report. This walks the sources (AST) of every package and app
and lists each reach-in found elsewhere:

* an import of a private module or name (``from mlx_lm.utils import _get_classes``);
* an attribute chain rooted at a third-party import that reaches a private name
  (``trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE``, ``DPOTrainer._prepare_dataset``), also through
  ``getattr``/``hasattr``/``setattr``/``delattr`` with a literal name;
* a method with a private name defined on a subclass of a third-party class (an override of a private hook);
* a dotted module path naming a private module in a string (``"mlx._distributed_utils.launch"``);
* a private attribute of a parameter annotated with a third-party type (``tokenizer: TokenizerWrapper``,
  then ``tokenizer._tokenizer``);
* a private attribute read on any object whose name the project itself never defines anywhere, so it can
  only come from a library;
* reading a function's code or closure (``__closure__``, ``__code__``, ``co_freevars``,
  ``inspect.getclosurevars``): how a library's patched function is built is its internals too.

Without types, a private attribute that the project also defines on its own classes, read on an object of
unknown type, cannot be told apart; the annotation rule covers the common case.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THIRD_PARTY = frozenset({"torch", "transformers", "trl", "peft", "accelerate", "mlx", "mlx_lm", "datasets",
                         "safetensors", "gguf", "huggingface_hub", "tokenizers"})
INTROSPECTION = frozenset({"__closure__", "__code__", "__globals__", "co_freevars", "co_consts", "co_name",
                           "co_varnames", "getclosurevars"})
DOTTED = re.compile(r"(?P<top>[A-Za-z_]\w*)(\.[A-Za-z_]\w*)+(:[A-Za-z_]\w*)?")
# Reach-ins another change removes; each entry must still be found (so the list cannot go stale).
PENDING: dict[tuple[str, str], str] = {}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def sources(root: Path) -> list[Path]:
    files = sorted(root.glob("packages/*/src/**/*.py")) + sorted(root.glob("apps/*/src/**/*.py"))
    return [f for f in files if "_compat" not in f.relative_to(root).parts]


def _defined_names(files: list[Path]) -> set[str]:
    """Every name the project itself defines or assigns (functions, classes, variables, attributes, arguments,
    and private names it spells as strings, e.g. for setattr)."""
    names: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                names.add(node.value)
    return names


def _chain_base(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _third_party_bindings(tree: ast.Module) -> set[str]:
    """Names the module binds to third-party modules or objects (``import trl``, ``from trl import X``)."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in THIRD_PARTY:
                    bound.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in THIRD_PARTY:
                bound.update(alias.asname or alias.name for alias in node.names)
    return bound


def _typed_receivers(tree: ast.Module, bound: set[str]) -> Iterator[tuple[int, str]]:
    """Private attributes of parameters annotated with a third-party type, inside their function."""
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        args = func.args.posonlyargs + func.args.args + func.args.kwonlyargs
        typed = {a.arg for a in args if a.annotation is not None
                 and any(isinstance(n, ast.Name) and n.id in bound for n in ast.walk(a.annotation))}
        for node in ast.walk(func):
            if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                    and node.value.id in typed):
                yield node.lineno, f"attribute {node.attr} of {node.value.id} (a third-party type)"


def _module_offences(tree: ast.Module, defined: set[str]) -> Iterator[tuple[int, str]]:
    bound = _third_party_bindings(tree)
    yield from _typed_receivers(tree, bound)
    derived: set[str] = set()  # classes of this module with a third-party base (directly or through each other)
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(_chain_base(b) in bound | derived for b in node.bases):
            derived.add(node.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in THIRD_PARTY and any(map(_private, parts)):
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] in THIRD_PARTY:
                names = [a.name for a in node.names]
                if any(map(_private, parts)) or any(map(_private, names)):
                    yield node.lineno, f"from {node.module} import {', '.join(names)}"
        elif isinstance(node, ast.Attribute) and node.attr in INTROSPECTION:
            yield node.lineno, f"reads {node.attr}"
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            if _chain_base(node.value) in bound:
                yield node.lineno, f"attribute {node.attr} of {_chain_base(node.value)}"
            elif isinstance(node.ctx, ast.Load) and node.attr not in defined:
                yield node.lineno, f"attribute {node.attr} (never defined by the project)"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) >= 2:
            name = node.args[1]
            if (node.func.id in ("getattr", "hasattr", "setattr", "delattr") and isinstance(name, ast.Constant)
                    and isinstance(name.value, str) and _private(name.value) and _chain_base(node.args[0]) in bound):
                yield node.lineno, f"{node.func.id}(..., {name.value!r}) on {_chain_base(node.args[0])}"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = DOTTED.fullmatch(node.value)
            if match and match["top"] in THIRD_PARTY and any(map(_private, re.split(r"[.:]", node.value))):
                yield node.lineno, f"string {node.value!r}"
        elif isinstance(node, ast.ClassDef) and node.name in derived:
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and _private(item.name):
                    yield item.lineno, f"{node.name} overrides the private {item.name} of a third-party base"


def offences(root: Path) -> dict[tuple[str, str], int]:
    """(file, what) -> line, for every reach-in outside the ``_compat`` packages under ``root``."""
    files = sources(root)
    defined = _defined_names(files)
    found: dict[tuple[str, str], int] = {}
    for path in files:
        rel = path.relative_to(root).as_posix()
        for line, what in _module_offences(ast.parse(path.read_text(encoding="utf-8")), defined):
            found.setdefault((rel, what), line)
    return found


def test_no_third_party_private_name_outside_compat() -> None:
    found = offences(ROOT)
    unexpected = sorted(f"{file}:{line}: {what}" for (file, what), line in found.items()
                        if (file, what) not in PENDING)
    assert not unexpected, ("third-party private names outside a _compat module (move each into the backend's "
                            "_compat/<library>.py, with a fallback and a fast_paths() entry):\n  "
                            + "\n  ".join(unexpected))
    stale = [f"{file}: {what} ({why})" for (file, what), why in PENDING.items() if (file, what) not in found]
    assert not stale, "reach-ins listed as pending are gone, remove them from PENDING:\n  " + "\n  ".join(stale)


def test_the_walk_finds_reach_ins(tmp_path: Path) -> None:
    """Each kind of reach-in in the module docstring is found (the check above can fail)."""
    module = tmp_path / "packages/demo/src/demo/reach.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "import trl.trainer.utils\n"
        "from mlx_lm.utils import _get_classes\n"
        "from trl.trainer.dpo_trainer import DPOTrainer\n"
        "size = trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE\n"
        "hook = getattr(DPOTrainer, '_precompute_ref_logps')\n"
        "LAUNCH = 'mlx._distributed_utils.launch'\n"
        "class Ours(DPOTrainer):\n"
        "    def _prepare_dataset(self, dataset):\n"
        "        return dataset\n"
        "    def _mine(self):\n"
        "        self._state = 1\n"
        "        return self._state\n"
        "def inner(wrapper):\n"
        "    return wrapper._detokenizer\n"
        "def typed(tokenizer: DPOTrainer, ours):\n"
        "    ours._tokenizer = 1\n"
        "    return tokenizer._tokenizer, ours._tokenizer, typed.__closure__\n",
        encoding="utf-8")
    (tmp_path / "packages/demo/src/demo/_compat").mkdir()
    (tmp_path / "packages/demo/src/demo/_compat/trl.py").write_text(
        "from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE\n", encoding="utf-8")
    found = {what for (_, what) in offences(tmp_path)}
    assert found == {
        "from mlx_lm.utils import _get_classes",
        "attribute _CHUNKED_LOGPROB_CHUNK_SIZE of trl",
        "getattr(..., '_precompute_ref_logps') on DPOTrainer",
        "string 'mlx._distributed_utils.launch'",
        "Ours overrides the private _prepare_dataset of a third-party base",
        "Ours overrides the private _mine of a third-party base",
        "attribute _detokenizer (never defined by the project)",
        "attribute _tokenizer of tokenizer (a third-party type)",
        "reads __closure__",
    }, found
