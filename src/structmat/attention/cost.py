"""FLOP and memory-traffic model of one Transformer layer (kexue.fm/archives/8610).

Counting convention (as nanoGPT's ``estimate_mfu`` and ``torch.utils.flop_counter``): a
matmul (m, k) @ (k, n) costs 2·m·k·n FLOPs; element-wise work (softmax, feature maps,
activations, norms) is left out unless ``elementwise=True``. With width d, h heads of
size d_h = d/h, FFN width f·d and n tokens, the standard (softmax) layer costs

    QKV 6·n·d²  +  scores 2·n²·d  +  weighted sum 2·n²·d  +  output 2·n·d²  +  FFN 4f·n·d²
    = (8 + 4f)·n·d² + 4·n²·d          (= 24·n·d² + 4·n²·d for f = 4)

so the n² part equals the rest at n = (2 + f)·d (6d, 4608 for BERT-base's d = 768).
Linear attention replaces the 4·n²·d by 4·n·d·d_h + 2·n·d (Katharopoulos et al. 2020);
Nyström attention with m landmarks by 8·n·m·d plus O(m²·d + h·m³) (Xiong et al. 2021).
"""

from __future__ import annotations

from structmat._checks import check_choice, check_positive_int, fail

__all__ = [
    "MIXERS",
    "PROJECTION_PARTS",
    "attention_share",
    "crossover_length",
    "layer_bytes",
    "layer_flops",
]

MIXERS = ("softmax", "linear", "nystrom")
# Parts that do not depend on the mixer; every other key (but "total") is the mixer's.
PROJECTION_PARTS = ("qkv_proj", "out_proj", "ffn", "ffn_activation", "layernorm")


def _check(n: int, d: int, heads: int, ffn_mult: int, mixer: str, landmarks: int) -> None:
    check_positive_int(n, "n")
    check_positive_int(d, "d")
    check_positive_int(heads, "heads")
    if d % heads:
        raise fail("d", f"a multiple of heads = {heads}", repr(d))
    check_positive_int(ffn_mult, "ffn_mult")
    check_choice(mixer, "mixer", MIXERS)
    check_positive_int(landmarks, "landmarks")


def layer_flops(
    n: int,
    d: int,
    heads: int,
    ffn_mult: int = 4,
    mixer: str = "softmax",
    landmarks: int = 64,
    pinv_iterations: int = 6,
    conv_kernel: int = 0,
    elementwise: bool = False,
) -> dict[str, int]:
    """FLOPs of one Transformer layer's forward pass, by part, for a single sequence.

    Args:
        n: sequence length.
        d: model width (h·d_h).
        heads: h.
        ffn_mult: FFN width / d.
        mixer: ``"softmax"``, ``"linear"`` or ``"nystrom"``.
        landmarks: m for Nyström (min(m, n) is used).
        pinv_iterations: Newton–Schulz steps for Nyström (4 m×m matmuls each).
        conv_kernel: depthwise-conv skip kernel (0: none): 2·k·n·d.
        elementwise: add estimates of the element-wise work (softmax 5 FLOPs per score,
            feature map 2 per entry, GELU 8 per hidden unit, two layer norms 8 per entry).

    Returns:
        dict of part -> FLOPs with a ``"total"`` key (matmul parts as 2·m·k·n).

    Raises:
        ValueError: a non-positive size, d not a multiple of heads, unknown mixer.
    """
    _check(n, d, heads, ffn_mult, mixer, landmarks)
    check_positive_int(pinv_iterations, "pinv_iterations", minimum=0)
    check_positive_int(conv_kernel, "conv_kernel", minimum=0)
    dh = d // heads
    f: dict[str, int] = {"qkv_proj": 2 * n * d * 3 * d}
    if mixer == "softmax":
        f["scores"] = 2 * n * n * d  # h heads of (n, d_h) @ (d_h, n)
        if elementwise:
            f["softmax"] = 5 * heads * n * n  # max, subtract, exp, sum, divide
        f["weighted_sum"] = 2 * n * n * d  # h heads of (n, n) @ (n, d_h)
    elif mixer == "linear":
        if elementwise:
            f["feature_map"] = 2 * 2 * n * d  # elu + 1 on q and k
        f["kv_state"] = 2 * n * d * dh  # φ(K)ᵀ V: h heads of (d_h, n) @ (n, d_h)
        f["query_state"] = 2 * n * d * dh  # φ(Q) S: h heads of (n, d_h) @ (d_h, d_h)
        f["normaliser"] = 2 * n * d  # φ(Q) z: h heads of (n, d_h) @ (d_h, 1)
    else:
        m = min(landmarks, n)
        if elementwise:
            f["landmarks"] = 2 * n * d  # segment sums of Q and K
            f["softmax"] = 5 * heads * (2 * n * m + m * m)
        f["kernel3_scores"] = 2 * m * n * d  # Q̃ Kᵀ
        f["kernel3_values"] = 2 * m * n * d  # softmax(Q̃ Kᵀ) V
        f["kernel2_scores"] = 2 * m * m * d  # Q̃ K̃ᵀ
        f["pinv"] = pinv_iterations * 4 * heads * 2 * m**3  # 4 (m, m) matmuls per step
        f["pinv_apply"] = 2 * m * m * d  # Z W
        f["kernel1_scores"] = 2 * n * m * d  # Q K̃ᵀ
        f["kernel1_values"] = 2 * n * m * d  # softmax(Q K̃ᵀ) (Z W)
    if conv_kernel:
        f["conv"] = 2 * conv_kernel * n * d
    f["out_proj"] = 2 * n * d * d
    f["ffn"] = 2 * 2 * n * d * ffn_mult * d  # up and down projections
    if elementwise:
        f["ffn_activation"] = 8 * n * ffn_mult * d
        f["layernorm"] = 2 * 8 * n * d
    f["total"] = sum(f.values())
    return f


def attention_share(flops: dict[str, int]) -> float:
    """Fraction of a ``layer_flops`` result spent in the mixer (not projections or FFN)."""
    mixing = sum(v for k, v in flops.items() if k not in PROJECTION_PARTS and k != "total")
    return mixing / flops["total"]


def crossover_length(d: int, ffn_mult: int = 4) -> int:
    """Smallest n at which softmax attention's n² part costs as much as the rest of the layer.

    4·n²·d >= (8 + 4f)·n·d²  <=>  n >= (2 + f)·d  (6d for f = 4; kexue.fm/archives/8610).
    The head count cancels out.

    Args:
        d: model width.
        ffn_mult: FFN width / d.

    Returns:
        (2 + ffn_mult)·d.
    """
    check_positive_int(d, "d")
    check_positive_int(ffn_mult, "ffn_mult")
    return (2 + ffn_mult) * d


def _mm(m: int, k: int, n: int) -> int:
    """Elements moved by a matmul (m, k) @ (k, n): both operands read, the result written."""
    return m * k + k * n + m * n


def layer_bytes(
    n: int,
    d: int,
    heads: int,
    ffn_mult: int = 4,
    mixer: str = "softmax",
    landmarks: int = 64,
    bytes_per_element: int = 4,
    fused: bool = True,
) -> dict[str, int]:
    """Minimal memory traffic of one layer's forward pass, by part, in bytes.

    Each operation reads its operands and writes its result once (a lower bound with
    perfect caching inside an operation, none between operations).

    Args:
        n, d, heads, ffn_mult, mixer, landmarks: as in ``layer_flops``.
        bytes_per_element: 4 for float32, 2 for bf16.
        fused: softmax attention as one fused kernel (reads q, k, v, writes the output;
            the (n, n) scores stay on chip, as in FlashAttention) rather than scores,
            softmax and weighted sum each going through memory (h·n² elements, 4 times).

    Returns:
        dict of part -> bytes with a ``"total"`` key.
    """
    _check(n, d, heads, ffn_mult, mixer, landmarks)
    check_positive_int(bytes_per_element, "bytes_per_element")
    dh = d // heads
    h = heads
    e: dict[str, int] = {"qkv_proj": 3 * _mm(n, d, d)}
    if mixer == "softmax":
        if fused:
            e["attention"] = 4 * n * d  # read q, k, v; write the output
        else:
            e["scores"] = h * _mm(n, dh, n)
            e["softmax"] = 2 * h * n * n
            e["weighted_sum"] = h * _mm(n, n, dh)
    elif mixer == "linear":
        e["kv_state"] = h * _mm(dh, n, dh)
        e["query_state"] = h * _mm(n, dh, dh)
        e["normaliser"] = h * _mm(n, dh, 1)
    else:
        m = min(landmarks, n)
        e["landmarks"] = 2 * (n * d + m * d)
        e["kernel3"] = 2 * n * d + 2 * m * d  # fused: read Q̃, K, V; write W
        e["kernel2"] = h * (_mm(m, dh, m) + 2 * m * m)
        e["pinv_apply"] = h * _mm(m, m, dh)
        e["kernel1"] = 2 * n * d + 2 * m * d  # fused: read Q, K̃, ZW; write the output
    e["out_proj"] = _mm(n, d, d)
    e["ffn"] = _mm(n, d, ffn_mult * d) + _mm(n, ffn_mult * d, d)
    out = {k: v * bytes_per_element for k, v in e.items()}
    out["total"] = sum(out.values())
    return out
