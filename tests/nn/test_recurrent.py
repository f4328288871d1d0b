"""RNNCell, LSTMCell, GRUCell against PyTorch's equations; Recurrence over a time axis."""
from __future__ import annotations

import numpy as np
import pytest

import funcflux as ff
from funcflux import nn
from funcflux.test_util import check_grads

R = np.random.default_rng(0)
sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731


def _randomise(cell):
    """Random (non-zero) biases too, so every term of the equations is exercised."""
    return ff.fmap(lambda a: R.normal(size=a.shape) * 0.5, cell)


def ref_lstm(cell, h, c, x):
    n = cell.hidden_size
    Wi, Wh, b = cell.weight_ih, cell.weight_hh, cell.bias
    rows = lambda k: slice(k * n, (k + 1) * n)  # noqa: E731
    gate = lambda k: x @ Wi[rows(k)].T + h @ Wh[rows(k)].T + b[rows(k)]  # noqa: E731
    i, f, g, o = sig(gate(0)), sig(gate(1)), np.tanh(gate(2)), sig(gate(3))
    c = f * c + i * g
    return o * np.tanh(c), c


def ref_gru(cell, h, x):
    n = cell.hidden_size
    W = lambda M, k: M[k * n:(k + 1) * n]  # noqa: E731
    Wi, Wh, bi, bh = cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh
    r = sig(x @ W(Wi, 0).T + W(bi, 0) + h @ W(Wh, 0).T + W(bh, 0))
    z = sig(x @ W(Wi, 1).T + W(bi, 1) + h @ W(Wh, 1).T + W(bh, 1))
    new = np.tanh(x @ W(Wi, 2).T + W(bi, 2) + r * (h @ W(Wh, 2).T + W(bh, 2)))
    return (1 - z) * new + z * h


def test_rnn_cell():
    cell = _randomise(nn.RNNCell(3, 4, dtype=np.float64, rng=0))
    assert cell.weight_ih.shape == (4, 3) and cell.weight_hh.shape == (4, 4)
    x, h = R.normal(size=(2, 3)), R.normal(size=(2, 4))
    h2, y = cell(h, x)
    np.testing.assert_allclose(h2, np.tanh(x @ cell.weight_ih.T + h @ cell.weight_hh.T + cell.bias))
    assert y is h2
    relu_cell = nn.RNNCell(3, 4, nn.relu, rng=0)
    assert relu_cell(None, np.ones((2, 3), np.float32))[0].min() >= 0
    check_grads(lambda c, h, x: cell(h, x)[0], (cell, h, x), order=2)


def test_lstm_cell_matches_pytorch_equations():
    cell = _randomise(nn.LSTMCell(3, 4, dtype=np.float64, rng=0))
    assert cell.weight_ih.shape == (16, 3) and cell.weight_hh.shape == (16, 4)
    assert cell.bias.shape == (16,)
    x, h, c = R.normal(size=(2, 3)), R.normal(size=(2, 4)), R.normal(size=(2, 4))
    (h2, c2), y = cell((h, c), x)
    rh, rc = ref_lstm(cell, h, c, x)
    np.testing.assert_allclose(h2, rh, rtol=1e-12)
    np.testing.assert_allclose(c2, rc, rtol=1e-12)
    assert y is h2
    check_grads(lambda cell, h, c, x: cell((h, c), x), (cell, h, c, x), order=2)


def test_lstm_gate_order_input_forget_cell_output():
    # Only the forget gate's bias is large: c' = sigmoid(10) c + sigmoid(0) tanh(0) ~ c.
    cell = nn.LSTMCell(1, 1, init=nn.zeros, init_recurrent=nn.zeros, dtype=np.float64)
    cell = ff.tree.at(lambda m: m.bias, cell, replace=np.array([0.0, 10.0, 0.0, 0.0]))
    (h, c), _ = cell((np.zeros((1, 1)), np.ones((1, 1))), np.zeros((1, 1)))
    np.testing.assert_allclose(c, sig(10.0))
    np.testing.assert_allclose(h, 0.5 * np.tanh(sig(10.0)))


def test_gru_cell_matches_pytorch_equations():
    cell = _randomise(nn.GRUCell(3, 4, dtype=np.float64, rng=0))
    assert cell.weight_ih.shape == (12, 3) and cell.bias_hh.shape == (12,)
    x, h = R.normal(size=(2, 3)), R.normal(size=(2, 4))
    h2, y = cell(h, x)
    np.testing.assert_allclose(h2, ref_gru(cell, h, x), rtol=1e-12)
    check_grads(lambda cell, h, x: cell(h, x)[0], (cell, h, x), order=2)
    assert nn.GRUCell(3, 4, bias=False).bias_ih is None


def test_initial_carry_and_none_carry():
    lstm = nn.LSTMCell(3, 5, rng=0)
    h, c = lstm.initial_carry(2)
    assert h.shape == c.shape == (2, 5) and h.dtype == np.float32 and not h.any()
    assert lstm.initial_carry().__len__() == 2 and lstm.initial_carry()[0].shape == (5,)
    gru = nn.GRUCell(3, 5, dtype=np.float64)
    assert gru.initial_carry(4).shape == (4, 5) and gru.initial_carry(4).dtype == np.float64
    x = R.normal(size=(2, 3)).astype(np.float32)
    np.testing.assert_array_equal(lstm(None, x)[1], lstm(lstm.initial_carry(2), x)[1])


def test_cell_shape_error():
    with pytest.raises(ValueError, match=r"^LSTMCell\(3 => 5\) got input of shape \(2, 4\); "
                                         r"expected \(\.\.\., 3\)$"):
        nn.LSTMCell(3, 5)(None, np.ones((2, 4)))


def test_recurrence_equals_a_loop_and_returns_the_carry():
    cell = _randomise(nn.LSTMCell(3, 4, dtype=np.float64, rng=0))
    rnn = nn.Recurrence(cell)
    x = R.normal(size=(2, 6, 3))
    ys = rnn(x)
    assert ys.shape == (2, 6, 4)
    h, c = np.zeros((2, 4)), np.zeros((2, 4))
    for t in range(6):
        h, c = ref_lstm(cell, h, c, x[:, t])
        np.testing.assert_allclose(ys[:, t], h, rtol=1e-12)
    (hT, cT), ys2 = rnn.scan(None, x)
    np.testing.assert_allclose(hT, h, rtol=1e-12)
    np.testing.assert_allclose(cT, c, rtol=1e-12)
    carry, ys3 = nn.Recurrence(cell, return_carry=True)(x)
    np.testing.assert_array_equal(ys3, ys)
    # a given carry, and unbatched (T, F) input
    h0 = (R.normal(size=(2, 4)), R.normal(size=(2, 4)))
    assert not np.allclose(rnn(x, h0), ys)
    np.testing.assert_allclose(rnn(x[0]), ys[0], rtol=1e-12)


def test_recurrence_gradients_and_errors():
    rnn = nn.Recurrence(_randomise(nn.GRUCell(2, 3, dtype=np.float64, rng=0)))
    x = R.normal(size=(2, 4, 2))
    check_grads(lambda m, x: m(x), (rnn, x), order=1)
    simple = nn.Recurrence(_randomise(nn.RNNCell(2, 3, dtype=np.float64)))
    check_grads(lambda m, x: m(x)[:, -1], (simple, x), order=2)
    g = ff.grad(lambda m: np.sum(m(x)))(rnn)
    assert isinstance(g, nn.Recurrence) and g.cell.weight_hh.shape == (9, 3)
    # any callable cell
    acc = nn.Recurrence(lambda c, x: (c + x, c + x))
    np.testing.assert_allclose(acc(x, np.zeros((2, 2))), np.cumsum(x, axis=1))
    with pytest.raises(ValueError, match=r"Recurrence\(GRUCell\(2 => 3\)\) got input of shape"):
        rnn(np.ones(4))
    with pytest.raises(ValueError, match="at least one time step"):
        rnn(np.ones((2, 0, 2)))
