"""YAML for config files and ``--set`` values: safe-loaded, bounded, strict.

* only plain data (``yaml.SafeLoader``: no tags that build objects);
* aliases may not expand the document past :data:`MAX_NODES` values (an alias bomb — 9 levels of 9
  aliases is 387 million values — fails at once, before anything walks the expanded tree);
* a key repeated in one mapping is an error naming both lines (YAML would silently keep the last);
* a UTF-8 byte-order mark is allowed; text that is not UTF-8 is an error with its line number.
"""

from __future__ import annotations

from typing import Any

import yaml

from mindprint_interfaces import ConfigError

MAX_NODES = 100_000  # values after alias expansion; a real config has a few hundred


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it below
                continue
            if first is not None:
                raise _Duplicate(key, first, key_node.start_mark.line + 1)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


class _Duplicate(Exception):
    def __init__(self, key: Any, first: int, line: int) -> None:
        super().__init__(key)
        self.key, self.first, self.line = key, first, line


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """How many values the node graph stands for once every alias is expanded (stops counting past ``limit``)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 1  # a recursive alias counts once (SafeLoader builds the cycle as shared objects)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
                if total > limit:
                    break
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                total += size(key) + size(value)
                if total > limit:
                    break
        total = min(total, limit + 1)
        sizes[id(node)] = total
        return total

    return size(root)


def _decode(data: bytes | str, source: str) -> str:
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line})",
                          source=f"{source}:{line}") from None


def load_yaml(data: bytes | str, source: str) -> Any:
    """Parse one YAML document; every problem is a :class:`ConfigError` at ``source:line``."""
    text = _decode(data, source)
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            if _expanded_size(node, MAX_NODES) > MAX_NODES:
                raise ConfigError(f"YAML aliases expand to more than {MAX_NODES} values; write the values out "
                                  "instead of nesting aliases", source=source)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except _Duplicate as exc:
        raise ConfigError(f"key {str(exc.key)[:60]!r} appears twice in one mapping (lines {exc.first} and "
                          f"{exc.line}); YAML would silently keep the last", source=f"{source}:{exc.line}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"invalid YAML: {problem}", source=where) from None
