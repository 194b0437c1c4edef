"""Rotary frequencies and context-length scaling (linear, NTK, dynamic NTK, YaRN, Llama 3).

Standard RoPE turns rotary pair ``i`` of a ``dim``-channel head at position ``n`` by
``n * theta_i`` with ``theta_i = base ** (-2 i / dim)`` (RoFormer, Su et al. 2021,
eq. 15). A model trained on ``L_train`` positions is run on longer contexts by
changing the frequencies; each method below is written out with its source, and
``inverse_frequencies`` matches ``transformers.modeling_rope_utils.ROPE_INIT_FUNCTIONS``
for the Hugging Face ``rope_type`` of the same name (tests compare them).

With ``s`` the scale factor and ``d = dim``:

* ``linear`` (position interpolation, Chen et al. 2023, eq. 2): ``theta_i / s``.
* ``ntk`` (NTK-aware base scaling, bloc97 2023): ``base' = base * s ** (d / (d - 2))``,
  so the lowest frequency is interpolated by ``s`` and the highest kept.
* ``dynamic`` (dynamic NTK, emozilla 2023; HF ``dynamic``): at context length ``L``,
  ``base' = base * (s L / L_train - (s - 1)) ** (d / (d - 2))`` for ``L > L_train``
  and ``base`` otherwise. See :class:`~structmat.rope.rotary.RotaryEmbedding` for how
  this interacts with a key cache.
* ``yarn`` (Peng et al. 2023, eqs. 17-23 "NTK-by-parts" + temperature): with
  ``r_i = L_train / (2 pi / theta_i)`` rotations per training context, pairs with
  ``r_i > beta_fast`` keep ``theta_i``, pairs with ``r_i < beta_slow`` use ``theta_i / s``,
  and a linear ramp over the pair index blends between them. Attention logits are
  scaled by ``1/t`` with ``sqrt(1/t) = 0.1 ln s + 1``; like HF we return that
  ``sqrt(1/t)`` as ``attention_factor`` and multiply cos and sin by it, so q and k
  each carry one factor.
* ``llama3`` (Meta Llama 3.1 reference code): wavelengths ``2 pi / theta_i`` shorter
  than ``L_train / high_freq_factor`` are kept, longer than ``L_train / low_freq_factor``
  are divided by ``s``, and in between ``theta_i`` is blended with
  ``smooth = (L_train / wavelen - low) / (high - low)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from structmat._checks import (
    check_choice,
    check_even_int,
    check_int,
    check_number,
    check_positive_int,
    fail,
)

__all__ = ["SCALING_KINDS", "RopeScaling", "inverse_frequencies", "parse_scaling"]

SCALING_KINDS = ("linear", "ntk", "dynamic", "yarn", "llama3")


@dataclass(frozen=True)
class RopeScaling:
    """Context-length scaling of rotary frequencies (see the module docstring).

    Attributes:
        kind: one of ``"linear" | "ntk" | "dynamic" | "yarn" | "llama3"``.
        factor: the scale factor ``s`` (> 0).
        original_max_position_embeddings: ``L_train``, the context length the model
            was trained on (needed by ``dynamic``, ``yarn`` and ``llama3``).
        low_freq_factor, high_freq_factor: Llama 3 wavelength bounds.
        beta_fast, beta_slow: YaRN ramp bounds in rotations per training context.
        mscale, mscale_all_dim: DeepSeek-style YaRN temperature; the factor becomes
            ``(0.1 mscale ln s + 1) / (0.1 mscale_all_dim ln s + 1)`` when both are set.
        attention_factor: override the YaRN attention factor.
        truncate: YaRN rounds the ramp bounds to whole pair indices (HF default True).
    """

    kind: str
    factor: float = 1.0
    original_max_position_embeddings: int | None = None
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float | None = None
    mscale_all_dim: float | None = None
    attention_factor: float | None = None
    truncate: bool = True


# Hugging Face spellings that mean the same as a RopeScaling field.
_HF_ALIASES = {"type": "kind", "rope_type": "kind", "max_position_embeddings": None}
_NEEDS_TRAIN_LEN = ("dynamic", "yarn", "llama3")


def parse_scaling(scaling: Any, name: str = "scaling") -> RopeScaling | None:
    """Accept None, a :class:`RopeScaling`, or a Hugging Face ``rope_scaling`` dict.

    A dict may use HF keys (``rope_type`` or ``type``, ``factor``,
    ``original_max_position_embeddings``, ``low_freq_factor``, ``beta_fast``, ...).
    ``{"rope_type": "default"}`` means no scaling. For ``dynamic``, HF reads the
    trained length from the model config's ``max_position_embeddings``; here the
    dict carries it as ``original_max_position_embeddings`` or
    ``max_position_embeddings``.

    Raises:
        ValueError: unknown kind or key, a missing or non-positive parameter.
    """
    if scaling is None:
        return None
    if isinstance(scaling, RopeScaling):
        spec = scaling
    elif isinstance(scaling, Mapping):
        known = {f.name for f in fields(RopeScaling)}
        kw: dict[str, Any] = {}
        train_len = None
        for key, value in scaling.items():
            if key in ("type", "rope_type", "kind"):
                kw["kind"] = value
            elif key == "max_position_embeddings":
                train_len = value
            elif key in known:
                kw[key] = value
            else:
                raise fail(
                    f"{name}[{key!r}]",
                    "a key of " + ", ".join(sorted(known | set(_HF_ALIASES))),
                    "an unknown key (pass rope_theta as base=, or use RotaryEmbedding.from_hf)",
                )
        if "kind" not in kw:
            raise fail(name, "a 'rope_type' (or 'type') entry", f"keys {sorted(scaling)}")
        if kw["kind"] == "default":
            return None
        if kw.get("original_max_position_embeddings") is None and train_len is not None:
            kw["original_max_position_embeddings"] = train_len
        if kw.get("factor") is None:
            kw.pop("factor", None)
        for key in ("beta_fast", "beta_slow"):  # HF treats a falsy value as the default
            if not kw.get(key, True):
                kw.pop(key)
        spec = RopeScaling(**kw)
    else:
        raise fail(name, "None, a RopeScaling or a rope_scaling dict", type(scaling).__name__)
    check_choice(spec.kind, f"{name}.kind", SCALING_KINDS)
    check_number(spec.factor, f"{name}.factor", 0.0, low_open=True)
    if spec.kind in _NEEDS_TRAIN_LEN:
        check_int(
            spec.original_max_position_embeddings,
            f"{name}.original_max_position_embeddings",
            1,
            wanted=f"the trained context length (an integer >= 1) for {spec.kind!r} scaling",
        )
    if spec.kind == "llama3" and not spec.high_freq_factor > spec.low_freq_factor > 0:
        raise fail(
            f"{name}.high_freq_factor",
            f"a value > low_freq_factor = {spec.low_freq_factor} > 0",
            repr(spec.high_freq_factor),
        )
    if spec.kind == "ntk" and spec.factor < 1:
        raise fail(f"{name}.factor", "a factor >= 1 for 'ntk' scaling", repr(spec.factor))
    return replace(spec, factor=float(spec.factor))


def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN's sqrt(1/t) = 0.1 * mscale * ln(s) + 1 (Peng et al. 2023, eq. 22); 1 for s <= 1."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def inverse_frequencies(
    dim: int,
    base: float = 10000.0,
    scaling: Any = None,
    seq_len: int | None = None,
) -> tuple[torch.Tensor, float]:
    """Rotary frequencies theta_i (radians per position) after context scaling.

    Args:
        dim: rotary channels ``d`` (even); there are ``d / 2`` pairs.
        base: RoPE base (``rope_theta``).
        scaling: None, :class:`RopeScaling` or a HF ``rope_scaling`` dict.
        seq_len: the context length, used only by ``dynamic`` scaling (None means
            ``L_train``, i.e. unscaled).

    Returns:
        (inv_freq, attention_factor): inv_freq (dim/2,) float64 on the CPU, and the
        factor cos and sin are multiplied by (YaRN's temperature; 1.0 otherwise).
    """
    check_even_int(dim, "dim", wanted="an even integer >= 2 (rotary channels)")
    check_number(base, "base", 1.0, low_open=True)
    if seq_len is not None:
        check_positive_int(seq_len, "seq_len")
    spec = parse_scaling(scaling)
    i2 = torch.arange(0, dim, 2, dtype=torch.float64)  # 2i, (dim/2,)
    if spec is None:
        return base ** (-i2 / dim), 1.0
    s = spec.factor
    if spec.kind == "linear":
        return base ** (-i2 / dim) / s, 1.0
    if spec.kind == "ntk":
        return (base * s ** (dim / (dim - 2))) ** (-i2 / dim), 1.0
    train = spec.original_max_position_embeddings
    assert train is not None
    if spec.kind == "dynamic":
        length = max(seq_len or train, train)
        new_base = base * (s * length / train - (s - 1)) ** (dim / (dim - 2))
        return new_base ** (-i2 / dim), 1.0
    theta = base ** (-i2 / dim)
    if spec.kind == "llama3":
        wavelen = 2 * math.pi / theta
        low_wavelen = train / spec.low_freq_factor
        high_wavelen = train / spec.high_freq_factor
        smooth = (train / wavelen - spec.low_freq_factor) / (
            spec.high_freq_factor - spec.low_freq_factor
        )
        blended = (1 - smooth) * theta / s + smooth * theta
        out = torch.where(wavelen > low_wavelen, theta / s, theta)
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        return torch.where(medium, blended, out), 1.0

    # yarn: pair index where the training context holds `rot` full turns (eq. 19 inverted)
    def pair_index(rot: float) -> float:
        return dim * math.log(train / (rot * 2 * math.pi)) / (2 * math.log(base))

    low, high = pair_index(spec.beta_fast), pair_index(spec.beta_slow)
    if spec.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # as HF: avoid a zero-width ramp
    ramp = ((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    keep = 1 - ramp  # 1: extrapolate (keep theta), 0: interpolate (theta / s)
    inv = theta / s * (1 - keep) + theta * keep
    if spec.attention_factor is not None:
        factor = float(spec.attention_factor)
    elif spec.mscale and spec.mscale_all_dim:
        factor = _yarn_mscale(s, spec.mscale) / _yarn_mscale(s, spec.mscale_all_dim)
    else:
        factor = _yarn_mscale(s)
    return inv, factor
