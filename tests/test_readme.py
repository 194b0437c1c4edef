"""The README's test command is what CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_block(marker: str) -> str:
    lines = (ROOT / "README.md").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# ") and marker in line:
            return lines[i + 1].strip()
    raise AssertionError(f"no code block marked {marker!r} in README.md")


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1].strip() == _readme_block("run the tests")


def test_readme_main_command_installs_with_constraints() -> None:
    cmd = _readme_block("run the main job")
    assert "-c constraints.txt" in cmd
    assert "structmat " in cmd
