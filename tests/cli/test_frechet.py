"""`structmat frechet`: results, routes and one-line error paths (exit code 2)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from structmat.cli import main
from structmat.gaussian import GaussianMoments
from tests.reference import gaussian as ref


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def features(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng()
    a = rng.standard_normal((300, 6))
    b = rng.standard_normal((200, 6)) * 1.3 + 0.2
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "b.npz", feats=b.astype(np.float32))
    # the file holds float32; compare against its exact float64 values
    return tmp_path / "a.npy", tmp_path / "b.npz", a, b.astype(np.float32).astype(np.float64)


def test_features_vs_features(capsys: pytest.CaptureFixture[str], features: tuple) -> None:
    pa, pb, a, b = features
    code, out, err = _run(capsys, "frechet", str(pa), str(pb))
    assert code == 0 and err == ""
    want = ref.frechet(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert float(out) == pytest.approx(want, rel=1e-6)  # printed with 6 decimals


def test_json_and_moments_file(
    capsys: pytest.CaptureFixture[str], features: tuple, tmp_path: Path
) -> None:
    pa, _, a, b = features
    GaussianMoments().update(b).save(tmp_path / "stats.npz")
    code, out, _ = _run(capsys, "frechet", str(pa), str(tmp_path / "stats.npz"), "--json")
    assert code == 0
    result = json.loads(out)
    want = ref.frechet(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert result["frechet_distance"] == pytest.approx(want, rel=1e-10)
    assert result["route"] == "moments"
    assert result["a"] == {"path": str(pa), "kind": "features", "n": 300, "d": 6}
    assert result["b"]["kind"] == "moments"


def test_gram_route_when_fewer_samples_than_dimensions(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rng = np.random.default_rng()
    a, b = rng.standard_normal((8, 40)), rng.standard_normal((6, 40)) + 0.5
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    code, out, _ = _run(
        capsys, "frechet", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--json"
    )
    assert code == 0
    result = json.loads(out)
    assert result["route"] == "gram"
    assert result["frechet_distance"] == pytest.approx(
        ref.frechet_features_highprec(a, b), rel=1e-12
    )


def test_demo(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "frechet", "--demo", "--json")
    assert code == 0
    result = json.loads(out)
    # 20k samples in d = 64: the estimate is close to the population value
    assert result["estimated_from_samples"] == pytest.approx(
        result["exact_population_distance"], rel=0.1
    )


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    np.save(tmp_path / "obj.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "nan.npy", np.full((4, 3), np.nan))
    np.save(tmp_path / "rank3.npy", np.zeros((4, 3, 2)))
    np.save(tmp_path / "one_row.npy", np.zeros((1, 3)))
    np.save(tmp_path / "text.npy", np.array([["a", "b", "c"]] * 3))
    np.save(tmp_path / "wide.npy", np.zeros((5, 4)))
    np.savez(tmp_path / "two.npz", x=np.zeros((3, 3)), y=np.zeros((3, 3)))
    np.savez(tmp_path / "badmom.npz", mu=np.zeros(3), sigma=np.zeros((2, 2)))
    (tmp_path / "junk.npy").write_text("not numpy")
    return {
        "missing": (tmp_path / "nope.npy", "no such file"),
        "object": (tmp_path / "obj.npy", "pickled or object data is never loaded"),
        "nan": (tmp_path / "nan.npy", "NaN or infinite"),
        "rank3": (tmp_path / "rank3.npy", r"shape \(n, d\) with n >= 2; got \(4, 3, 2\)"),
        "one_row": (tmp_path / "one_row.npy", r"n >= 2; got \(1, 3\)"),
        "text": (tmp_path / "text.npy", "expected real numbers"),
        "mismatch": (tmp_path / "wide.npy", "feature dimensions differ"),
        "two_arrays": (tmp_path / "two.npz", r"found arrays \['x', 'y'\]"),
        "bad_moments": (tmp_path / "badmom.npz", r"got mu \(3,\), sigma \(2, 2\)"),
        "junk": (tmp_path / "junk.npy", r"expected a numeric .npy array, got not a .npy array"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "object",
        "nan",
        "rank3",
        "one_row",
        "text",
        "mismatch",
        "two_arrays",
        "bad_moments",
        "junk",
    ],
)
def test_bad_files_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str
) -> None:
    good = tmp_path / "good.npy"
    np.save(good, np.random.default_rng().standard_normal((10, 3)))
    path, pattern = _bad_files(tmp_path)[case]
    code, out, err = _run(capsys, "frechet", str(path), str(good))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("structmat frechet: error: ")
    assert re.search(pattern, err), err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["frechet"], "give two files A and B, or --demo"),
        (["frechet", "--demo", "x.npy"], "--demo takes no files"),
        (["frechet", "--bogus"], "unrecognized arguments: --bogus"),
        (["nosuchcommand"], "invalid choice"),
    ],
)
def test_usage_errors_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], pattern: str
) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and pattern in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "frechet", "--help")
    assert code == 0 and "Fréchet" in out


def test_python_dash_m_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "structmat", "frechet", "--bogus"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "structmat: error: unrecognized arguments: --bogus"
