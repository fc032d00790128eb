from pathlib import Path

from posttrainbench.integrity import manifest, policy
from posttrainbench.workspace.builder import EVALUATOR_PATHS


def _ws(tmp_path: Path) -> Path:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "a.jinja").write_text("A")
    (tmp_path / "evaluate.py").write_text("print('eval')")
    (tmp_path / "notes.txt").write_text("free to change")
    return tmp_path


def test_untouched_evaluator_passes(tmp_path: Path) -> None:
    ws = _ws(tmp_path)
    before = manifest.snapshot(ws, EVALUATOR_PATHS)
    (ws / "notes.txt").write_text("changed")
    check = manifest.compare(before, manifest.snapshot(ws, EVALUATOR_PATHS))
    assert check.passed and policy.decide([check]).decision == "clean"


def test_tampering_is_recorded_and_flags(tmp_path: Path) -> None:
    ws = _ws(tmp_path)
    before = manifest.snapshot(ws, EVALUATOR_PATHS)
    (ws / "evaluate.py").write_text("print('score: 1.0')")
    (ws / "templates" / "a.jinja").unlink()
    (ws / "templates" / "b.jinja").symlink_to("/etc/passwd")
    check = manifest.compare(before, manifest.snapshot(ws, EVALUATOR_PATHS))
    assert not check.passed
    assert check.evidence == {
        "modified": ["evaluate.py"],
        "deleted": ["templates/a.jinja"],
        "added": ["templates/b.jinja"],
    }
    verdict = policy.decide([check])
    assert verdict.decision == "flagged" and len(verdict.reasons) == 3
