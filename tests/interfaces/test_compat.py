"""mindprint_interfaces.compat: a tested range says whether a version is inside it and what to do when not."""

from __future__ import annotations

import pytest

from mindprint_interfaces.compat import FastPath, Tested, fast_path, release


def test_release_and_range() -> None:
    assert release("1.16.0rc1") == (1, 16, 0)
    tested = Tested("trl", "1.16", "1.17")
    assert tested.specifier == ">=1.16,<1.17"
    assert tested.contains("1.16") and tested.contains("1.16.0") and tested.contains("1.16.9")
    assert not tested.contains("1.15.99") and not tested.contains("1.17.0") and not tested.contains("2.0")
    with pytest.raises(ValueError):
        release("main")


def test_a_moved_version_says_to_reverify(monkeypatch: pytest.MonkeyPatch) -> None:
    tested = Tested("trl", "1.16", "1.17")
    monkeypatch.setattr(Tested, "installed", lambda self: "1.17.0")
    problem = tested.problem()
    assert problem is not None and "trl 1.17.0" in problem and "re-verify" in problem
    monkeypatch.setattr(Tested, "installed", lambda self: None)
    assert tested.problem() == "trl is not installed"
    monkeypatch.setattr(Tested, "installed", lambda self: "1.16.2")
    assert tested.problem() is None


def test_fast_path_entries() -> None:
    assert fast_path("trl.compact_head", None) == FastPath("trl.compact_head", True)
    off = fast_path("trl.compact_head", "gone")
    assert not off.available and off.describe() == "trl.compact_head: off (gone)"


def test_method_signature_problem_names_what_moved() -> None:
    from mindprint_interfaces.compat import method_signature_problem

    class Host:
        def hook(self, train_dataset: object = None) -> None: ...

    assert method_signature_problem(Host, "hook", ("train_dataset",)) is None
    assert method_signature_problem(Host, "hook", ("dataset",)) == "Host.hook takes (train_dataset), not (dataset)"
    assert method_signature_problem(Host, "gone", ()) == "Host no longer has gone"
