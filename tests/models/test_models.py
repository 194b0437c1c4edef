"""Sequence models: every mixer runs, honours padding, and learns a tiny task."""

from __future__ import annotations

import pytest
import torch

from structmat.models import MIXERS, SequenceClassifier, SequenceRegressor, build_mixer


def _tiny(mixer: str, **kw: object) -> SequenceClassifier:
    torch.manual_seed(0)
    options = {
        "num_tokens": 12,
        "d_model": 16,
        "n_layers": 1,
        "mixer": mixer,
        "heads": 2,
        "length": 24,
    }
    options.update(kw)
    return SequenceClassifier(3, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("mixer", list(MIXERS))
def test_padding_never_changes_real_outputs(mixer: str) -> None:
    model = _tiny(mixer).double().eval()
    x = torch.randint(1, 12, (3, 24))
    lengths = torch.tensor([24, 17, 9])
    mask = torch.arange(24) < lengths[:, None]
    x_pad = torch.where(mask, x, 0)
    x_junk = torch.where(mask, x, torch.randint(1, 12, (3, 24)))  # different "padding" content
    out_pad, out_junk = model(x_pad, mask), model(x_junk, mask)
    torch.testing.assert_close(out_pad, out_junk, rtol=1e-9, atol=1e-9)
    # and a padded sequence scores like the same sequence alone, unpadded
    alone = model(x_pad[2:3, :9], mask[2:3, :9])
    torch.testing.assert_close(out_pad[2:3], alone, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("mixer", list(MIXERS))
def test_each_mixer_learns_a_tiny_task_without_nan(mixer: str) -> None:
    """Class = the first token (mod 3): needs information from position 0 at the end."""
    torch.manual_seed(1)
    model = _tiny(mixer, pool="mean")
    x = torch.randint(1, 12, (64, 24))
    y = x[:, 0] % 3
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, (mixer, losses[:3], losses[-3:])


def test_shapes_multi_target_regression_and_float_inputs() -> None:
    multi = _tiny("s4d", num_targets=4, pool="last", causal=True)
    assert multi(torch.randint(1, 12, (2, 24))).shape == (2, 4, 3)
    reg = SequenceRegressor(input_dim=2, d_model=16, n_layers=1, mixer="linear", heads=2, length=24)
    assert reg(torch.randn(5, 24, 2)).shape == (5,)
    two = SequenceRegressor(
        2, input_dim=2, d_model=16, n_layers=1, mixer="softmax", heads=2, prenorm=False
    )
    assert two(torch.randn(5, 24, 2)).shape == (5, 2)


def test_last_pool_reads_the_last_k_real_positions_in_order() -> None:
    """Target k comes from position length - K + k alone (copying's output positions)."""
    model = _tiny("s4d", num_targets=4, pool="last", causal=True).double().eval()
    x = torch.randint(1, 12, (2, 24))
    mask = torch.arange(24) < torch.tensor([[24], [13]])
    out = model(x, mask)  # (2, 4, 3)
    h = model.encoder(x)
    for block in model.blocks:
        h = block(h, mask)
    h = model.norm(h, mask)
    for row, length in enumerate((24, 13)):
        expected = model.head(h[row, length - 4 : length])  # (4, 3)
        torch.testing.assert_close(out[row], expected, rtol=1e-12, atol=1e-12)
    # one head shared by the K positions, not one per target
    assert model.head.out_features == 3
    mean = _tiny("s4d", num_targets=4, pool="mean")
    assert mean.head.out_features == 12 and mean(x).shape == (2, 4, 3)


def test_build_mixer_registry() -> None:
    layer = build_mixer("softmax", 16, heads=2)
    assert layer(torch.randn(2, 5, 16), None).shape == (2, 5, 16)
    with pytest.raises(ValueError, match=r"mixer: expected one of 's4' \| 's4d'"):
        build_mixer("lstm", 16)


def test_bad_inputs() -> None:
    model = _tiny("linear")
    with pytest.raises(ValueError, match=r"x: expected shape \(B, L\) token ids"):
        model(torch.randint(1, 12, (2, 3, 4)))
    with pytest.raises(ValueError, match=r"x: expected integer token ids"):
        model(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"mask: expected bool \(B, L\) = \(2, 3\)"):
        model(torch.randint(1, 12, (2, 3)), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"num_tokens, input_dim: expected exactly one of them"):
        SequenceClassifier(3, num_tokens=5, input_dim=2)
    with pytest.raises(ValueError, match=r"pool: expected one of 'mean' \| 'last'"):
        SequenceClassifier(3, num_tokens=5, pool="max")
    reg = SequenceRegressor(input_dim=2, d_model=8, n_layers=1, mixer="linear", heads=2)
    with pytest.raises(
        ValueError, match=r"x: expected shape \(B, L, C = 2\), got shape \(1, 4, 3\)"
    ):
        reg(torch.randn(1, 4, 3))
