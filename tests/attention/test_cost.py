"""Cost model: hand counts, crossover, and agreement with torch's FlopCounterMode."""

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from structmat.attention import MultiHeadAttention, crossover_length, layer_bytes, layer_flops
from structmat.attention.cost import attention_share


def test_standard_layer_hand_count():
    # BERT-base: d = 768, 12 heads, FFN 3072, n = 512: 24·n·d² + 4·n²·d.
    f = layer_flops(512, 768, 12)
    n, d = 512, 768
    assert f["qkv_proj"] == 6 * n * d * d
    assert f["scores"] == f["weighted_sum"] == 2 * n * n * d
    assert f["out_proj"] == 2 * n * d * d
    assert f["ffn"] == 16 * n * d * d
    assert f["total"] == 24 * n * d * d + 4 * n * n * d
    assert attention_share(f) == pytest.approx(n / (6 * d + n))


def test_linear_and_nystrom_hand_count():
    n, d, h, m = 1000, 64, 4, 10
    dh = d // h
    lin = layer_flops(n, d, h, mixer="linear")
    assert lin["kv_state"] == lin["query_state"] == h * 2 * n * dh * dh
    assert lin["normaliser"] == h * 2 * n * dh
    nys = layer_flops(n, d, h, mixer="nystrom", landmarks=m, pinv_iterations=3, conv_kernel=5)
    assert nys["kernel1_scores"] == h * 2 * n * m * dh
    assert nys["pinv"] == 3 * 4 * h * 2 * m**3
    assert nys["conv"] == 2 * 5 * n * d
    mixing = 4 * 2 * n * m * d + 2 * 2 * m * m * d + 3 * 4 * h * 2 * m**3
    assert nys["total"] == 24 * n * d * d + mixing + 2 * 5 * n * d
    with_elem = layer_flops(n, d, h, mixer="nystrom", landmarks=m, elementwise=True)
    assert with_elem["total"] > layer_flops(n, d, h, mixer="nystrom", landmarks=m)["total"]
    assert "softmax" in with_elem and "layernorm" in with_elem


@pytest.mark.parametrize("d", [256, 512, 768])
def test_crossover_is_six_d(d):
    n = crossover_length(d)
    assert n == 6 * d
    f = layer_flops(n, d, 8)
    assert f["scores"] + f["weighted_sum"] == f["total"] // 2  # n² part == the rest
    assert crossover_length(d, ffn_mult=2) == 4 * d


def test_bytes_hand_count():
    n, d, h = 100, 32, 4
    b = layer_bytes(n, d, h, bytes_per_element=2)
    assert b["qkv_proj"] == 2 * 3 * (n * d + d * d + n * d)
    assert b["attention"] == 2 * 4 * n * d
    unfused = layer_bytes(n, d, h, fused=False)
    assert unfused["scores"] == 4 * h * (n * 8 + 8 * n + n * n)
    assert unfused["total"] > layer_bytes(n, d, h)["total"]


class Layer(nn.Module):
    """A Transformer layer: attention and a 4d GELU FFN (layer norms carry no matmuls)."""

    def __init__(self, d, heads, **kw):
        super().__init__()
        self.attn = MultiHeadAttention(d, heads, **kw)
        self.ffn = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.ffn(x)


@pytest.mark.parametrize(
    ("mixer", "n", "kw"),
    [
        ("softmax", 96, {}),
        ("softmax", 512, {}),
        ("linear", 200, {}),
        ("nystrom", 256, {"num_landmarks": 16, "pinv_iterations": 6}),
        ("nystrom", 300, {"num_landmarks": 32, "pinv_iterations": 4}),
    ],
)
def test_matches_flop_counter(mixer, n, kw):
    d, heads = 64, 4
    layer = Layer(d, heads, mixer=mixer, **kw)
    x = torch.randn(1, n, d)
    # The math backend runs SDPA as matmuls, which FlopCounterMode counts (the fused CPU
    # kernel has no registered formula).
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        layer(x)
    measured = fc.get_total_flops()
    model = layer_flops(
        n, d, heads, mixer=mixer, landmarks=kw.get("num_landmarks", 64),
        pinv_iterations=kw.get("pinv_iterations", 6), conv_kernel=kw.get("conv_kernel", 0),
    )["total"]
    assert model == measured  # exact (the issue asks for 2%)


def test_conv_count_matches_flop_counter():
    # The module runs its conv skip as block matmuls (more multiply-adds, faster); the
    # model counts the convolution itself, checked here on the Conv2d it stands for.
    n, d, heads, k = 200, 64, 4, 9
    conv = nn.Conv2d(heads, heads, (k, 1), padding=(k // 2, 0), groups=heads, bias=False)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        conv(torch.randn(1, heads, n, d // heads))
    assert layer_flops(n, d, heads, conv_kernel=k)["conv"] == fc.get_total_flops()


def test_errors():
    with pytest.raises(ValueError, match=r"mixer: expected one of 'softmax' \| 'linear' \| 'nys"):
        layer_flops(10, 64, 4, mixer="flash")
    with pytest.raises(ValueError, match=r"d: expected a multiple of heads = 5, got 64"):
        layer_flops(10, 64, 5)
    with pytest.raises(ValueError, match=r"n: expected an integer >= 1, got 0"):
        layer_bytes(0, 64, 4)
    with pytest.raises(ValueError, match=r"d: expected an integer >= 1, got -3"):
        crossover_length(-3)
