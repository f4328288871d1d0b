"""Models print like Flux: one line, parameter count and size on the outermost layer."""
from __future__ import annotations

import functools

import numpy as np

import funcflux as ff
from funcflux import nn


def test_flux_example():
    m = nn.Chain(nn.Dense(784, 256, nn.relu), nn.Dense(256, 10))
    assert repr(m) == ("Chain(Dense(784 => 256, relu), Dense(256 => 10))  "
                       "# 203_530 parameters, 795.039 KiB")


def test_each_layer():
    cases = {
        nn.Dense(3, 2, bias=False): "Dense(3 => 2; bias=False)  # 6 parameters, 0.023 KiB",
        nn.Dense(3, 2, np.tanh, dtype=np.float64): "Dense(3 => 2, tanh)  # 8 parameters, 0.062 KiB",
        nn.BatchNorm(64, nn.relu): "BatchNorm(64, relu)  # 128 parameters, plus 128 "
                                   "non-trainable, 1.000 KiB",
        nn.BatchNorm(2, momentum=0.01, affine=False): "BatchNorm(2; momentum=0.01, affine=False)"
                                                      "  # 0 parameters, plus 4 non-trainable, "
                                                      "0.016 KiB",
        nn.LayerNorm((2, 3)): "LayerNorm((2, 3))  # 12 parameters, 0.047 KiB",
        nn.LayerNorm(5, eps=1e-3): "LayerNorm(5; eps=0.001)  # 10 parameters, 0.039 KiB",
        nn.Embedding(1000, 64): "Embedding(1000 => 64)  # 64_000 parameters, 250.000 KiB",
        nn.Dropout(0.5): "Dropout(0.5)",
        nn.Flatten(): "Flatten()",
        nn.LSTMCell(3, 5): "LSTMCell(3 => 5)  # 180 parameters, 0.703 KiB",
        nn.GRUCell(3, 5): "GRUCell(3 => 5)  # 150 parameters, 0.586 KiB",
        nn.RNNCell(3, 5, nn.relu): "RNNCell(3 => 5, relu)  # 45 parameters, 0.176 KiB",
        nn.Recurrence(nn.RNNCell(3, 5)): "Recurrence(RNNCell(3 => 5))  # 45 parameters, 0.176 KiB",
    }
    for layer, text in cases.items():
        assert repr(layer) == text


def test_containers_functions_and_names():
    d = nn.Dense(2, 2)
    assert repr(nn.Chain(enc=d, act=np.tanh)) == \
        "Chain(enc=Dense(2 => 2), act=tanh)  # 6 parameters, 0.023 KiB"
    assert repr(nn.SkipConnection(nn.Chain(d, nn.relu), np.add)).startswith(
        "SkipConnection(Chain(Dense(2 => 2), relu), add)  # 6 parameters")
    assert repr(nn.Parallel(None, d, nn.Dropout(0.1))).startswith(
        "Parallel(None, Dense(2 => 2), Dropout(0.1))  #")
    leaky = functools.partial(nn.leakyrelu, a=0.2)
    assert repr(nn.Dense(2, 2, leaky)).startswith("Dense(2 => 2, leakyrelu(a=0.2))  #")
    assert repr(nn.Chain()) == "Chain()"


def test_tied_arrays_count_once():
    d = nn.Dense(4, 4)
    assert repr(nn.Chain(d, d)).endswith("# 20 parameters, 0.078 KiB")


def test_stacked_ensemble_prints_the_stacked_axis():
    """Regression: a stack of 4 layers printed as one layer with 4x the parameters."""
    ens = ff.tree.stack([nn.Dense(3, 2) for _ in range(4)])
    assert repr(ens) == "Dense(3 => 2)  # 4 stacked, 8 parameters each, 0.125 KiB"
    chain = ff.tree.stack([nn.Chain(nn.Dense(2, 32, nn.relu), nn.BatchNorm(32), nn.LayerNorm(32),
                                    nn.Dense(32, 1)) for _ in range(16)])
    assert repr(chain) == ("Chain(Dense(2 => 32, relu), BatchNorm(32), LayerNorm(32), "
                           "Dense(32 => 1))  # 16 stacked, 257 parameters each, plus 64 "
                           "non-trainable, 20.062 KiB")
    conv = ff.tree.stack([nn.Conv((3, 3), 2, 4), nn.Conv((3, 3), 2, 4)])
    assert repr(conv).startswith("Conv((3, 3), 2 => 4)  # 2 stacked, 76 parameters each")
    grid = ff.tree.stack([ff.tree.stack([nn.GRUCell(3, 5)] * 2)] * 3)
    assert repr(grid).startswith("GRUCell(3 => 5)  # (3, 2) stacked, 150 parameters each")
    # Not a stack: arrays that disagree, or one outside a layer that declares its dimensions
    d = nn.Dense(3, 2)
    assert repr(nn.Chain(ens, d)).startswith("Chain(Dense(3 => 2), Dense(3 => 2))  # 40 param")
    assert "stacked" not in repr(nn.Chain(d, np.tanh))


def test_models_whose_leaves_are_not_arrays_print():
    """Regression: print(ff.fmap(np.shape, model)) raised (the layers read .shape)."""
    m = nn.Chain(nn.Dense(2, 3, nn.relu), np.tanh, nn.Conv((3, 3), 1, 2), nn.LSTMCell(2, 4))
    assert repr(ff.fmap(np.shape, m)) == (
        "Chain(Dense(weight=(3, 2), bias=(3,)), (), Conv(weight=(2, 1, 3, 3), bias=(2,)), "
        "LSTMCell(weight_ih=(16, 2), weight_hh=(16, 4), bias=(16,)))")
    assert repr(ff.fmap(lambda a: a.dtype.name, nn.Dense(2, 3))) == \
        "Dense(weight='float32', bias='float32')"
    mixed = ff.tree.at(lambda d: d.bias, nn.Dense(2, 3), replace=[1.5])
    assert repr(mixed) == "Dense(weight=float32[3, 2], bias=[1.5])  # 6 parameters, 0.023 KiB"
