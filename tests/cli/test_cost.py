"""`structmat cost`: the BERT-base table, JSON, the figure and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from structmat.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_bert_base_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "cost", "--d", "768", "--heads", "12",
                          "--n", "512,2048,8192,32768")
    assert code == 0 and err == ""
    assert "equals the rest at n = 4608" in out
    # share = 4n²d / (24nd² + 4n²d) = n / (6d + n)
    for n in (512, 2048, 8192, 32768):
        share = 100 * n / (6 * 768 + n)
        line = next(ln for ln in out.splitlines() if ln.split() and ln.split()[0] == str(n))
        assert f"{share:.1f}%" in line


def test_json_and_plot(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    fig = tmp_path / "cost.png"
    code, out, _ = _run(capsys, "cost", "--d", "512", "--heads", "8", "--n", "1024,4096",
                        "--json", "--plot", str(fig))
    assert code == 0
    data = json.loads(out)
    assert data["crossover_length"] == 3072
    rows = data["rows"]
    assert [r["n"] for r in rows] == [1024, 4096]
    for r in rows:
        assert r["speedup_bound"] == pytest.approx(1 / (1 - r["n2_share"]))
        assert 1 < r["speedup_linear"] < r["speedup_bound"]
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--n", "5,x"], "--n: expected comma-separated integers, got '5,x'"),
        (["--n", "0"], "--n: expected comma-separated integers >= 1"),
        (["--d", "100", "--heads", "12"], "d: expected a multiple of heads = 12, got 100"),
    ],
)
def test_errors(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, out, err = _run(capsys, "cost", *argv)
    assert code == 2 and out == ""
    assert err.startswith("structmat cost: error: ") and message in err
    assert len(err.strip().splitlines()) == 1
