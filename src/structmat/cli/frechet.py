"""``structmat frechet A B``: the Fréchet distance (FID number) between two feature sets.

A and B are ``.npy`` feature matrices (n, d), ``.npz`` files holding one such
matrix, or ``.npz`` moments with ``mu`` (d,) and ``sigma`` (d, d) (pytorch-fid's
statistics files, or ``GaussianMoments.save``). Files are read without pickle.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from structmat._io import load_npz, read_npy
from structmat.cli._common import CLIError
from structmat.gaussian import GaussianMoments, frechet_distance, frechet_distance_from_features

# Rows per chunk when streaming a large feature file into moments (float64 copy ~ 64 MB at d=2048).
_CHUNK_ROWS = 4096


@dataclass
class _Input:
    """One side of the comparison: raw features, or moments."""

    path: str
    features: np.ndarray | None = None  # (n, d), possibly memory-mapped
    mu: np.ndarray | None = None  # (d,)
    sigma: np.ndarray | None = None  # (d, d)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1] if self.features is not None else self.mu.shape[0])  # type: ignore[union-attr]

    def describe(self) -> dict[str, Any]:
        if self.features is not None:
            return {
                "path": self.path,
                "kind": "features",
                "n": int(self.features.shape[0]),
                "d": self.dim,
            }
        return {"path": self.path, "kind": "moments", "d": self.dim}


def _numeric(arr: np.ndarray, path: str, key: str) -> np.ndarray:
    if arr.dtype.kind not in "fiu":
        raise CLIError(f"{path}: array {key!r} has dtype {arr.dtype}; expected real numbers")
    return arr


def _load(path_str: str, which: str) -> _Input:
    """Read side ``which`` (``A`` or ``B``); every failure is a one-line error.

    The readers in ``structmat._io`` check each header against the bytes really
    present before allocating, refuse object arrays and verify a checksum the
    project wrote, so a lying or damaged file is refused, never mapped or unpickled.
    """
    path = Path(path_str)
    if not path.is_file():
        raise CLIError(f"{path_str}: no such file")
    if path.suffix == ".npz":
        arrays = load_npz(path, f"{which} {path_str}")
    else:
        # Memory-mapped, so a large feature file streams through GaussianMoments.
        arrays = {"features": read_npy(path, which, mmap=True)}
    if "mu" in arrays and "sigma" in arrays:
        mu = _numeric(arrays["mu"], path_str, "mu")
        sigma = _numeric(arrays["sigma"], path_str, "sigma")
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise CLIError(
                f"{path_str}: moments need mu (d,) and sigma (d, d); "
                f"got mu {mu.shape}, sigma {sigma.shape}"
            )
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise CLIError(f"{path_str}: mu/sigma contain NaN or infinite values")
        return _Input(path_str, mu=mu, sigma=sigma)
    if len(arrays) != 1:
        raise CLIError(
            f"{path_str}: expected one feature array or mu and sigma; found arrays {sorted(arrays)}"
        )
    ((key, feats),) = arrays.items()
    feats = _numeric(feats, path_str, key)
    if feats.ndim != 2 or feats.shape[0] < 2 or feats.shape[1] < 1:
        raise CLIError(
            f"{path_str}: features must have shape (n, d) with n >= 2; got {feats.shape}"
        )
    for start in range(0, feats.shape[0], _CHUNK_ROWS):
        if not np.isfinite(feats[start : start + _CHUNK_ROWS]).all():
            raise CLIError(f"{path_str}: features contain NaN or infinite values")
    return _Input(path_str, features=feats)


def _moments(inp: _Input) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu (d,), sigma (d, d)) in float64, streaming features chunk by chunk."""
    if inp.features is None:
        return torch.from_numpy(np.asarray(inp.mu, np.float64)), torch.from_numpy(
            np.asarray(inp.sigma, np.float64)
        )
    acc = GaussianMoments()
    for start in range(0, inp.features.shape[0], _CHUNK_ROWS):
        acc.update(np.asarray(inp.features[start : start + _CHUNK_ROWS], np.float64))
    return acc.mean, acc.cov


def compute(a: _Input, b: _Input) -> tuple[float, str]:
    """The distance and the route taken (``"gram"`` or ``"moments"``)."""
    if a.dim != b.dim:
        raise CLIError(f"feature dimensions differ: {a.path} has d={a.dim}, {b.path} has d={b.dim}")
    if (
        a.features is not None
        and b.features is not None
        and max(a.features.shape[0], b.features.shape[0]) < a.dim
    ):
        # Fewer samples than dimensions: the exact n×n cross-Gram route.
        value = frechet_distance_from_features(np.asarray(a.features), np.asarray(b.features))
        return float(value), "gram"
    mu1, s1 = _moments(a)
    mu2, s2 = _moments(b)
    return float(frechet_distance(mu1, s1, mu2, s2)), "moments"


def _demo(seed: int) -> dict[str, Any]:
    """Two known Gaussians: the distance estimated from samples vs the exact value."""
    gen = torch.Generator().manual_seed(seed)
    d, n = 64, 20_000
    basis = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))[0]
    spectrum = torch.logspace(0, -3, d, dtype=torch.float64)
    cov1 = (basis * spectrum) @ basis.T  # condition number 1e3
    cov2 = 1.5 * cov1 + 0.01 * torch.eye(d, dtype=torch.float64)
    mu1 = torch.zeros(d, dtype=torch.float64)
    mu2 = 0.05 * torch.ones(d, dtype=torch.float64)
    exact = float(frechet_distance(mu1, cov1, mu2, cov2))
    sample = []
    for mu, cov in ((mu1, cov1), (mu2, cov2)):
        chol = torch.linalg.cholesky(cov)
        sample.append(mu + torch.randn(n, d, generator=gen, dtype=torch.float64) @ chol.T)
    estimated = float(frechet_distance_from_features(sample[0], sample[1]))
    few = float(frechet_distance_from_features(sample[0][:32], sample[1][:32]))
    return {
        "d": d,
        "n": n,
        "exact_population_distance": exact,
        "estimated_from_samples": estimated,
        "estimated_from_32_samples_each_gram_route": few,
    }


def run(args: argparse.Namespace) -> int:
    if args.demo:
        if args.a or args.b:
            raise CLIError("--demo takes no files")
        result = _demo(args.seed)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print(f"Two Gaussians in d={result['d']}, {result['n']} samples each:")
            print(f"  exact Fréchet distance:          {result['exact_population_distance']:.6f}")
            print(f"  estimated from the samples:      {result['estimated_from_samples']:.6f}")
            few = result["estimated_from_32_samples_each_gram_route"]
            print(f"  from 32 samples each (n < d):    {few:.6f}")
        return 0
    if not (args.a and args.b):
        raise CLIError("give two files A and B, or --demo")
    a, b = _load(args.a, "A"), _load(args.b, "B")
    value, route = compute(a, b)
    if args.json:
        print(
            json.dumps(
                {"frechet_distance": value, "route": route, "a": a.describe(), "b": b.describe()}
            )
        )
    else:
        print(f"{value:.6f}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "frechet", help="Fréchet distance (FID) between two feature sets", description=__doc__
    )
    p.add_argument(
        "a", nargs="?", help="features (.npy/.npz, (n, d)) or moments (.npz with mu, sigma)"
    )
    p.add_argument("b", nargs="?", help="the same, for the second set")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument("--demo", action="store_true", help="run on generated Gaussian features")
    p.add_argument("--seed", type=int, default=0, help="seed for --demo")
    p.set_defaults(func=run)
