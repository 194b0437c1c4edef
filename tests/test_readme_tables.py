"""benchmarks/readme_tables.py: the README's generated tables match their JSONs."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme_tables", BENCH / "readme_tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["readme_tables"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)  # puts benchmarks/ on sys.path (for `tables`)
    return module


rt = _load()
from tables._common import meta_line  # noqa: E402


def test_committed_readme_is_in_sync_with_the_jsons(capsys: pytest.CaptureFixture) -> None:
    """CI fails when a table and its JSON disagree (or a renderer lacks its markers)."""
    assert rt.main(["--check"]) == 0, capsys.readouterr().err


# --- marker replacement, with a renderer of our own --------------------------------


def _renderers(calls: list[dict]) -> dict:
    def render(data: dict) -> str:
        calls.append(data)
        return f"| x |\n|---|\n| {data['x']} |\n\n{meta_line(data)}"

    return {"t": ("t.json", render)}


def _readme(body: str) -> str:
    block = f"{rt.begin_marker('t', 'old')}\n{body}\n{rt.end_marker('t')}"
    return f"# title\n\ntext before\n\n{block}\n\nafter\n"


def test_regenerate_replaces_the_block_and_is_idempotent(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text('{"x": 7, "meta": {"threads": 1}}')
    calls: list[dict] = []
    text, stale = rt.regenerate(_readme("| x |\n|---|\n| 6 |"), _renderers(calls), tmp_path)
    assert stale == ["t"]
    assert "| 7 |" in text and "| 6 |" not in text
    assert text.startswith("# title\n\ntext before\n\n") and text.endswith("\n\nafter\n")
    assert calls[0]["_json"].endswith("t.json")
    again, stale = rt.regenerate(text, _renderers(calls), tmp_path)
    assert (again, stale) == (text, [])


def test_marker_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text('{"x": 1}')
    renderers = _renderers([])
    begin, end = rt.begin_marker("t", "x"), rt.end_marker("t")
    bad = {
        "no markers": "# readme\n",
        "begin without end": f"{begin}\nbody\n",
        "end without begin": f"body\n{end}\n",
        "twice": f"{begin}\n{end}\n{begin}\n{end}\n",
        "no renderer": f"{begin}\n{end}\n{rt.begin_marker('u', 'x')}\n{rt.end_marker('u')}\n",
    }
    for case, text in bad.items():
        with pytest.raises(rt.TableError) as err:
            rt.regenerate(text, renderers, tmp_path)
        assert "\n" not in str(err.value), case


# --- the command line, on a copy of the README --------------------------------------


@pytest.fixture
def copy(tmp_path: Path) -> tuple[Path, Path]:
    readme, results = tmp_path / "README.md", tmp_path / "results"
    shutil.copy(ROOT / "README.md", readme)
    results.mkdir()
    shutil.copy(BENCH / "results" / "cur_million.json", results)
    return readme, results


def test_check_names_a_stale_block_and_changes_nothing(copy, capsys) -> None:
    readme, results = copy
    text = readme.read_text()
    # one number of the generated block, changed by hand (whatever the JSON says)
    cell = re.search(r"\| p50 [0-9.]+ ms, p99 [0-9.]+ ms \|", text)
    assert cell is not None
    readme.write_text(text.replace(cell.group(0), "| p50 -1 ms, p99 -1 ms |", 1))
    args = ["--readme", str(readme), "--results", str(results), "--only", "cur_million"]
    edited = readme.read_text()
    assert rt.main(["--check", *args]) == 1
    assert "cur_million" in capsys.readouterr().err
    assert readme.read_text() == edited
    assert rt.main(args) == 0
    assert readme.read_text() == text
    assert not list(readme.parent.glob(".README.md.*"))  # no temporary left behind
    assert rt.main(["--check", *args]) == 0


def test_missing_json_is_one_line_and_exit_2(copy, capsys) -> None:
    readme, results = copy
    (results / "cur_million.json").unlink()
    args = ["--check", "--readme", str(readme), "--results", str(results), "--only", "cur_million"]
    assert rt.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cur_million.json is missing" in err


def test_missing_markers_is_one_line_and_exit_2(copy, capsys) -> None:
    readme, results = copy
    readme.write_text("# nothing marked\n")
    args = ["--check", "--readme", str(readme), "--results", str(results), "--only", "cur_million"]
    assert rt.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no markers" in err and "cur_million" in err


# --- meta_line ----------------------------------------------------------------------


def test_meta_line_from_run_meta() -> None:
    data = {
        "meta": {
            "cpu": "Intel(R) Xeon(R) Processor",
            "arch": "x86_64",
            "cores": 2,
            "threads": 1,
            "python": "3.11.7",
            "torch": "2.13.0+cpu",
            "platform": "Linux",
            "load_average_1_5_15min": [0.56, 0.43, 0.6],
        },
    }
    want = (
        "Run: Intel(R) Xeon(R) Processor, 2 cores, 1 thread, torch 2.13.0+cpu, "
        "load 0.56 / 0.43 / 0.60 (benchmarks/results/rope.json)"
    )
    assert meta_line(data, "rope.json") == want
    assert meta_line({**data, "_json": "benchmarks/results/rope.json"}) == want
    assert meta_line(data) == want.removesuffix(" (benchmarks/results/rope.json)")
    several = {"meta": {**data["meta"], "threads": 2, "threads_run": [1, 2]}}
    assert ", 1 and 2 threads," in meta_line(several, "rope.json")


def test_meta_line_from_a_real_run_meta() -> None:
    sys.path.insert(0, str(BENCH))
    from _meta import run_meta

    line = meta_line({"meta": run_meta(threads=3, extra="x")}, "t.json")
    assert ", 3 threads, torch " in line and "not recorded" not in line
    assert line.endswith(" (benchmarks/results/t.json)")


def test_meta_line_from_legacy_keys_never_invents() -> None:
    flat = {"threads": 2, "torch": "2.13.0+cpu", "machine": "x86_64"}  # lra_synthetic's
    assert meta_line(flat, "lra_synthetic.json") == (
        "Run: x86_64, 2 threads, torch 2.13.0+cpu; CPU model, cores and load average not "
        "recorded (benchmarks/results/lra_synthetic.json)"
    )
    nested = {"machine": {"cpu_count": 2, "platform": "Linux-x", "torch": "2.13.0+cpu",
                          "load_avg": [0.787, 0.798, 0.989]}}  # fmt: skip
    assert meta_line(nested) == (
        "Run: Linux-x, 2 cores, torch 2.13.0+cpu, load 0.79 / 0.80 / 0.99; CPU model and "
        "threads not recorded"
    )
    one = {"machine": {"threads": 1, "torch": "2.13.0+cpu"}, "load_average_1min": 1.5}
    assert meta_line(one) == (
        "Run: 1 thread, torch 2.13.0+cpu, load 1.50 (1 min); CPU model and cores not recorded"
    )
    assert meta_line({}, "a.json") == (
        "Run: CPU model, cores, threads, torch version and load average not recorded "
        "(benchmarks/results/a.json)"
    )


def test_every_block_ends_with_its_run_line() -> None:
    """The contract: each renderer's last line is meta_line's, naming its own JSON."""
    for name, (json_name, fn) in rt.load_renderers().items():
        if json_name is None:  # computed, no run to describe
            continue
        lines = rt.render(name, json_name, fn, BENCH / "results")
        assert lines[-2:] == ["", rt.end_marker(name)], name
        last = lines[-3]
        assert last.startswith("Run: "), name
        assert last.endswith(f"(benchmarks/results/{json_name})"), name
