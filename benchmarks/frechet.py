"""Benchmark: structmat's Fréchet distance (FID number) against the routes in use today.

Side by side in one run, single thread, float64 unless stated:

- ours: ``structmat.gaussian.frechet_distance`` (Cholesky factors, nuclear norm of
  L2ᵀL1 by the first route whose proved error bound is <= 1e-11: eigvalsh of the Gram,
  an eigenvector certificate, or an SVD), and ``frechet_distance_from_features`` (exact
  n×n cross-Gram route) when there are fewer samples than dimensions;
- sqrtm route: pytorch-fid's ``calculate_frechet_distance`` (``scipy.linalg.sqrtm(S1 @ S2)``;
  the same code clean-fid uses). pytorch-fid's module imports torchvision, which does not
  import beside the CPU torch build, so its function is read from the installed package
  source and run alone; without the package an identical reimplementation is used and
  labelled so;
- torchmetrics' ``_compute_fid`` (``eigvals(S1 @ S2)``);
- POT's ``ot.gaussian.bures_wasserstein_distance`` (squared: it returns W2).

Accuracy is the relative difference to a float64 reference from tests/reference
(symmetric square roots by eigh, then an SVD). Peak memory is the rise of the
process's peak RSS during one call (/proc/self/clear_refs resets the peak).
Also: ``rotate`` (matrix-free) vs forming ``rotation`` and multiplying, d = 1024, batch 4096.

    pip install -c constraints.txt -e ".[bench]" && pip install --no-deps pytorch-fid
    python benchmarks/frechet.py            # full run (~10 min on one core)
    python benchmarks/frechet.py --quick    # small sizes, a smoke test

Writes benchmarks/results/frechet.json and frechet.png.
"""

from __future__ import annotations

import os

# Single thread everywhere, as the anchors in the issue; set before numpy/torch load.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import ast
import importlib.metadata
import importlib.util
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.reference

from _memory import peak_rise_kb
from _meta import run_meta

from structmat._io import write_json
from structmat.gaussian import frechet_distance, frechet_distance_from_features
from structmat.orthogonal import rotate, rotation
from tests.reference import gaussian as ref

RESULTS = ROOT / "benchmarks" / "results"


# --- peers -----------------------------------------------------------------------


def _sqrtm_route() -> tuple[Callable[..., float], str]:
    """pytorch-fid's calculate_frechet_distance, without importing torchvision."""
    spec = importlib.util.find_spec("pytorch_fid")
    if spec is not None and spec.submodule_search_locations:
        source_path = Path(next(iter(spec.submodule_search_locations))) / "fid_score.py"
        tree = ast.parse(source_path.read_text())
        func = next(
            n
            for n in tree.body
            if isinstance(n, ast.FunctionDef) and n.name == "calculate_frechet_distance"
        )
        namespace: dict[str, Any] = {"np": np, "linalg": scipy.linalg}
        exec(compile(ast.Module(body=[func], type_ignores=[]), str(source_path), "exec"), namespace)
        return namespace["calculate_frechet_distance"], "pytorch-fid (sqrtm)"

    def calculate_frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):  # type: ignore[no-untyped-def]
        diff = mu1 - mu2
        covmean, _ = scipy.linalg.sqrtm(sigma1.dot(sigma2), disp=False)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
        covmean = covmean.real
        return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)

    return calculate_frechet_distance, "sqrtm route (reimplemented; pytorch-fid not installed)"


def _torchmetrics() -> Callable[..., Any] | None:
    try:
        from torchmetrics.image.fid import _compute_fid
    except Exception:  # not installed, or a broken torchvision beside it
        return None
    return _compute_fid


def _pot() -> Callable[..., Any] | None:
    try:
        import ot.gaussian
    except Exception:
        return None
    return lambda m1, s1, m2, s2: ot.gaussian.bures_wasserstein_distance(m1, m2, s1, s2) ** 2


# --- measurement -------------------------------------------------------------------


def peak_mb(fn: Callable[[], Any]) -> float | None:
    """Rise of peak RSS while fn runs (Linux; None elsewhere)."""
    rise = peak_rise_kb(fn)
    return None if rise is None else rise / 1024


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """Median wall time over ``repeats`` calls, after one untimed warm-up call."""
    value = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, value


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _as_float(v: Any) -> float:
    return float(v.item() if hasattr(v, "item") else v)


# --- inputs ------------------------------------------------------------------------


def covariance_pair(d: int, cond: float, seed: int) -> tuple[np.ndarray, ...]:
    """Two nearby covariances with power-law spectra of condition number ``cond``
    (like feature covariances of two image sets), and two means."""
    rng = np.random.default_rng(seed)
    q1, _ = np.linalg.qr(rng.standard_normal((d, d)))
    q2, _ = np.linalg.qr(q1 + 0.3 * rng.standard_normal((d, d)) / np.sqrt(d))
    spec = np.logspace(0, -np.log10(cond), d)
    s1 = (q1 * spec) @ q1.T
    s2 = (q2 * (spec * rng.uniform(0.8, 1.25, d))) @ q2.T
    s1, s2 = 0.5 * (s1 + s1.T), 0.5 * (s2 + s2.T)
    mu1 = rng.standard_normal(d) * 0.1
    mu2 = mu1 + rng.standard_normal(d) * 0.01
    return mu1, s1, mu2, s2


def feature_pair(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw correlated features, n < d rows each."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    x1 = rng.standard_normal((n, d)) @ mix
    x2 = rng.standard_normal((n, d)) @ (mix + 0.1 * rng.standard_normal((d, d)) / np.sqrt(d)) + 0.05
    return x1, x2


# --- scenarios -----------------------------------------------------------------------


def run_methods(
    methods: dict[str, Callable[[], Any]], reference: float, repeats: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, fn in methods.items():
        median, times, value = timed(fn, repeats)
        value_f = _as_float(value)
        rel = abs(value_f - reference) / abs(reference) if np.isfinite(value_f) else None
        out[name] = {
            "median_s": median,
            "times_s": times,
            "peak_mb": peak_mb(fn),
            "value": value_f if np.isfinite(value_f) else str(value_f),
            "rel_err_vs_reference": rel,
        }
        err = f"{rel:.1e}" if rel is not None else "non-finite"
        print(f"    {name:44s} {median:8.3f} s   rel.err {err}", flush=True)
    return out


def _add_peers(
    methods: dict[str, Callable[[], Any]],
    tensors: list[torch.Tensor],
    arrays: tuple[np.ndarray, ...],
    tm_name: str,
    pot_name: str,
) -> None:
    """Add torchmetrics (on tensors) and POT (on arrays) where they import."""
    tm, pot = _torchmetrics(), _pot()
    if tm is not None:
        methods[tm_name] = lambda: tm(*tensors)
    if pot is not None:
        methods[pot_name] = lambda: pot(*arrays)


def pd_scenario(
    d: int, cond: float, repeats: int, sqrtm: Callable[..., float], sqrtm_name: str
) -> dict[str, Any]:
    print(f"  float64, d={d}, cond={cond:.0e}", flush=True)
    mu1, s1, mu2, s2 = covariance_pair(d, cond, seed=d)
    t = [torch.from_numpy(a) for a in (mu1, s1, mu2, s2)]
    reference = ref.frechet(mu1, s1, mu2, s2)
    methods: dict[str, Callable[[], Any]] = {"structmat": lambda: frechet_distance(*t)}
    methods[sqrtm_name] = lambda: sqrtm(mu1, s1, mu2, s2)
    _add_peers(methods, t, (mu1, s1, mu2, s2), "torchmetrics (eigvals)", "POT (ot.gaussian)")
    return {
        "name": f"float64 d={d} cond={cond:.0e}",
        "d": d,
        "cond": cond,
        "dtype": "float64",
        "reference": reference,
        "methods": run_methods(methods, reference, repeats),
    }


def float32_scenario(d: int, cond: float, repeats: int) -> dict[str, Any]:
    print(f"  float32, d={d}, cond={cond:.0e}", flush=True)
    arrays32 = [a.astype(np.float32) for a in covariance_pair(d, cond, seed=d + 1)]
    reference = ref.frechet(*[a.astype(np.float64) for a in arrays32])  # same rounded inputs
    t32 = [torch.from_numpy(a) for a in arrays32]
    methods: dict[str, Callable[[], Any]] = {
        "structmat float32": lambda: frechet_distance(*t32, dtype=torch.float32)
    }
    tm = _torchmetrics()
    if tm is not None:
        methods["torchmetrics float32"] = lambda: tm(*t32)
    return {
        "name": f"float32 d={d} cond={cond:.0e}",
        "d": d,
        "cond": cond,
        "dtype": "float32",
        "reference": reference,
        "methods": run_methods(methods, reference, repeats),
    }


def few_samples_scenario(
    n: int, d: int, repeats: int, sqrtm: Callable[..., float], sqrtm_name: str
) -> dict[str, Any]:
    print(f"  n={n} < d={d} raw features (float64)", flush=True)
    x1, x2 = feature_pair(n, d, seed=7)
    reference = ref.frechet_features_gram(x1, x2)
    mu1, mu2 = x1.mean(0), x2.mean(0)
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    t = [torch.from_numpy(a) for a in (mu1, s1, mu2, s2)]
    tx1, tx2 = torch.from_numpy(x1), torch.from_numpy(x2)
    methods: dict[str, Callable[[], Any]] = {
        "structmat (features, Gram route)": lambda: frechet_distance_from_features(tx1, tx2),
        "structmat (covariances)": lambda: frechet_distance(*t),
        sqrtm_name + " (covariances)": lambda: sqrtm(mu1, s1, mu2, s2),
    }
    _add_peers(methods, t, (mu1, s1, mu2, s2), "torchmetrics (covariances)", "POT (covariances)")
    return {
        "name": f"n={n} < d={d} features",
        "d": d,
        "n": n,
        "dtype": "float64",
        "note": "peers get the sample covariances precomputed (not timed); "
        "ours starts from the features",
        "reference": reference,
        "methods": run_methods(methods, reference, repeats),
    }


def rotate_scenario(d: int, batch: int, repeats: int) -> dict[str, Any]:
    print(f"  rotate vs matrix, d={d}, batch={batch}, float32", flush=True)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(d, generator=gen), torch.randn(d, generator=gen)
    x = torch.randn(batch, d, generator=gen)
    rows_a, rows_b = torch.randn(batch, d, generator=gen), torch.randn(batch, d, generator=gen)
    sub = 64  # per-row matrices: 64 x d x d at a time (256 MB at d = 1024), then scaled up
    methods = {
        "shared pair: rotate(a, b, X)": (lambda: rotate(a, b, x), 1.0),
        "shared pair: X @ rotation(a, b).T": (lambda: x @ rotation(a, b).T, 1.0),
        "per-row pairs: rotate(A, B, X)": (lambda: rotate(rows_a, rows_b, x), 1.0),
        f"per-row pairs: rotation(A, B) @ x (first {sub} rows, x{batch // sub})": (
            lambda: (rotation(rows_a[:sub], rows_b[:sub]) @ x[:sub, :, None]).squeeze(-1),
            batch / sub,
        ),
    }
    diff_shared = float((rotate(a, b, x) - x @ rotation(a, b).T).abs().max())
    diff_rows = float(
        (
            rotate(rows_a[:sub], rows_b[:sub], x[:sub])
            - (rotation(rows_a[:sub], rows_b[:sub]) @ x[:sub, :, None]).squeeze(-1)
        )
        .abs()
        .max()
    )
    out: dict[str, Any] = {}
    for name, (fn, scale) in methods.items():
        median, times, _ = timed(fn, repeats)
        out[name] = {
            "median_s": median * scale,
            "times_s": times,
            "scaled_by": scale,
            "peak_mb": peak_mb(fn),
        }
        print(f"    {name:60s} {median * scale:8.4f} s", flush=True)
    return {
        "name": f"rotate d={d} batch={batch}",
        "d": d,
        "batch": batch,
        "dtype": "float32",
        "max_abs_diff_shared": diff_shared,
        "max_abs_diff_rows": diff_rows,
        "methods": out,
    }


def speedups(scenario: dict[str, Any], ours: str) -> dict[str, float]:
    base = scenario["methods"][ours]["median_s"]
    return {name: m["median_s"] / base for name, m in scenario["methods"].items() if name != ours}


def figure(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fid = [s for s in results["scenarios"] if "rel_err" in json.dumps(s)]
    cols = (len(fid) + 1) // 2
    fig, axes = plt.subplots(2, cols, figsize=(5.2 * cols, 8), squeeze=False)
    for ax in axes.flat[len(fid) :]:
        ax.axis("off")
    for ax, s in zip(axes.flat, fid, strict=False):
        names = list(s["methods"])
        times = [s["methods"][n]["median_s"] for n in names]
        bars = ax.barh(
            range(len(names)),
            times,
            color=["C2" if n.startswith("structmat") else "C0" for n in names],
        )
        ax.set_yticks(range(len(names)), [n.replace(" (", "\n(") for n in names], fontsize=7)
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_xlabel("median seconds (1 thread, log)")
        ax.set_title(s["name"], fontsize=9)
        for bar, n in zip(bars, names, strict=False):
            rel = s["methods"][n]["rel_err_vs_reference"]
            label = "NaN" if rel is None else f"err {rel:.0e}"
            ax.text(
                bar.get_width(),
                bar.get_y() + bar.get_height() / 2,
                " " + label,
                va="center",
                fontsize=7,
            )
    fig.suptitle("Fréchet distance: time and relative error to a float64 reference")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS / "frechet.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    sqrtm, sqrtm_name = _sqrtm_route()
    dims = [128, 256] if args.quick else [512, 2048]
    scenarios = []
    for d in dims:
        for cond in (1e3, 1e6):
            scenarios.append(pd_scenario(d, cond, args.repeats, sqrtm, sqrtm_name))
    scenarios.append(float32_scenario(dims[-1], 1e4, args.repeats))
    scenarios.append(few_samples_scenario(dims[-1] // 2, dims[-1], args.repeats, sqrtm, sqrtm_name))
    scenarios.append(
        rotate_scenario(256 if args.quick else 1024, 512 if args.quick else 4096, args.repeats)
    )
    for s in scenarios:
        ours = next(iter(s["methods"]))
        s["time_ratio_peer_over_ours"] = speedups(s, ours)
    results = {
        "benchmark": "frechet",
        "command": "python benchmarks/frechet.py" + (" --quick" if args.quick else ""),
        "threads": 1,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "sqrtm_peer": sqrtm_name,
        "scenarios": scenarios,
    }
    results["meta"] = run_meta(
        threads=1,
        numpy=np.__version__,
        scipy=scipy.__version__,
        sqrtm_peer=sqrtm_name,
        torchmetrics=_version("torchmetrics"),
        pot=_version("pot"),
        pytorch_fid=_version("pytorch-fid"),
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, results)
    figure(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    for s in scenarios:
        ratios = ", ".join(f"{k}: {v:.1f}x" for k, v in s["time_ratio_peer_over_ours"].items())
        print(f"  {s['name']}: peer time / ours = {ratios}")


if __name__ == "__main__":
    main()
