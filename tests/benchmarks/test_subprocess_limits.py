"""benchmarks/_subprocess_limits.py: each outcome of a limited child, in seconds."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _subprocess_limits import run_limited

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_ok_returns_the_last_json_line_and_a_peak() -> None:
    r = run_limited(_py("print('noise'); print('{\"x\": 1}')"), timeout_s=30, mem_limit_gb=4)
    assert (r.outcome, r.status, r.returncode) == ("ok", "ok", 0)
    assert r.last_json() == {"x": 1}
    assert 0 < r.peak_rss_mb < 4 * 1024
    assert r.limits()["status"] == "ok"


def test_memory_limit_kills_the_child() -> None:
    # touches 1 GiB, 64 MiB at a time, against a 0.2 GiB limit
    code = "import time\nb=[]\nfor _ in range(16):\n b.append(bytearray(64<<20)); time.sleep(0.05)"
    r = run_limited(_py(code), timeout_s=60, mem_limit_gb=0.2)
    assert r.outcome == "memory" and r.status == "did not fit in 0.2 GB"
    assert r.returncode is not None and r.returncode < 0
    assert r.peak_rss_mb > 0.2 * 1024


def test_timeout_kills_the_child() -> None:
    r = run_limited(_py("import time; time.sleep(60)"), timeout_s=0.5, mem_limit_gb=4)
    assert r.outcome == "timeout" and r.status == "did not finish in 0.5 s"
    assert r.wall_s < 10


def test_failure_keeps_the_last_stderr_line() -> None:
    r = run_limited(_py("raise ValueError('boom')"), timeout_s=30, mem_limit_gb=4)
    assert r.outcome == "failed" and r.returncode == 1
    assert r.status == "failed: ValueError: boom"


def test_bench_lock_is_released_after_each_block(tmp_path: Path) -> None:
    from _subprocess_limits import bench_lock

    lock = tmp_path / "bench.lock"
    with bench_lock(str(lock)):
        pass
    with bench_lock(str(lock)), bench_lock(None):
        assert lock.exists()
