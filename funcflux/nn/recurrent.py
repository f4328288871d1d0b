"""Recurrent cells and ``Recurrence``, which runs a cell over a time axis.

A cell is one step: ``carry, y = cell(carry, x)`` with ``x`` of shape
``(N, in)`` (or ``(in,)``) and ``carry`` the state (``h`` for RNNCell and
GRUCell, ``(h, c)`` for LSTMCell); ``carry=None`` starts from zeros
(``cell.initial_carry(batch)``). ``Recurrence(cell)`` scans a batch-first
sequence ``(N, T, in) -> (N, T, hidden)``.

>>> import numpy as np
>>> from funcflux import nn
>>> rnn = nn.Recurrence(nn.LSTMCell(3, 5, rng=0))
>>> rnn(np.ones((2, 7, 3), np.float32)).shape
(2, 7, 5)
>>> carry, ys = rnn.scan(None, np.ones((2, 7, 3), np.float32))
>>> [c.shape for c in carry]
[(2, 5), (2, 5)]
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .. import numpy as fnp
from ..functors import functor
from .activations import sigmoid, tanh
from .base import Module, activation_name, array_module_of, as_rng, describe, shape_error
from .init import glorot_uniform, zeros
from ..ops.common import shape as _shape

__all__ = ["RNNCell", "LSTMCell", "GRUCell", "Recurrence"]


class _Cell(Module):
    """What the cells share: input checks, zero carries, printing."""

    weight_ih: Any

    @property
    def hidden_size(self) -> int:
        return int(self.weight_hh.shape[-1])  # type: ignore[attr-defined]

    @property
    def input_size(self) -> int:
        return int(self.weight_ih.shape[-1])

    def _zeros(self, batch: Any) -> Any:
        lead = () if batch is None else ((batch,) if np.ndim(batch) == 0 else tuple(batch))
        xp = array_module_of(self.weight_ih)
        return xp.zeros(lead + (self.hidden_size,), self.weight_ih.dtype)

    def initial_carry(self, batch: Any = None) -> Any:
        """Zeros: ``(batch, hidden)`` (``(hidden,)`` for ``batch=None``; a tuple for more axes)."""
        return self._zeros(batch)

    def _check(self, x: Any) -> tuple:
        s = _shape(x)
        if not s or s[-1] != self.input_size:
            raise shape_error(self, x, f"(..., {self.input_size})")
        return s

    def _start(self, carry: Any, x: Any) -> Any:
        s = self._check(x)
        return self.initial_carry(s[:-1]) if carry is None else carry

    def __call__(self, carry: Any, x: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _repr_inner(self) -> str:
        return f"{type(self).__name__}({self.input_size} => {self.hidden_size})"


def _init_cell(cell: Any, in_size: int, hidden: int, gates: int, init: Callable,
               init_recurrent: Callable, dtype: Any, rng: Any) -> None:
    rng = as_rng(rng)
    cell.weight_ih = init(rng, (gates * hidden, int(in_size)), dtype)
    cell.weight_hh = init_recurrent(rng, (gates * hidden, hidden), dtype)


@functor("weight_ih", "weight_hh", "bias")
class RNNCell(_Cell):
    """``h' = activation(x @ weight_ih.T + h @ weight_hh.T + bias)``; ``y = h'``.

    ``weight_ih`` ``(hidden, in)``, ``weight_hh`` ``(hidden, hidden)``, ``bias`` ``(hidden,)``.
    """

    _ndims = {"weight_ih": 2, "weight_hh": 2, "bias": 1}

    def __init__(self, in_size: int, hidden_size: int, activation: Callable = tanh, *,
                 bias: bool = True, init: Callable = glorot_uniform,
                 init_recurrent: Callable = glorot_uniform, dtype: Any = np.float32,
                 rng: Any = None):
        _init_cell(self, in_size, int(hidden_size), 1, init, init_recurrent, dtype, rng)
        self.bias = zeros(None, (int(hidden_size),), dtype) if bias else None
        self.activation = activation
        self._freeze()

    def __call__(self, carry: Any, x: Any) -> tuple[Any, Any]:
        h = self._start(carry, x)
        z = x @ self.weight_ih.T + h @ self.weight_hh.T
        if self.bias is not None:
            z = z + self.bias
        h = self.activation(z)
        return h, h

    def _repr_inner(self) -> str:
        act = "" if self.activation is tanh else f", {activation_name(self.activation)}"
        return f"RNNCell({self.input_size} => {self.hidden_size}{act})"


@functor("weight_ih", "weight_hh", "bias")
class LSTMCell(_Cell):
    """Long short-term memory; carry ``(h, c)``, output ``h'``.

    ``gates = x @ weight_ih.T + h @ weight_hh.T + bias`` split in four along the
    last axis in the order input, forget, cell, output (PyTorch's)::

        i, f, o = sigmoid(gates_i), sigmoid(gates_f), sigmoid(gates_o)
        c' = f * c + i * tanh(gates_g);   h' = o * tanh(c')

    ``weight_ih`` ``(4h, in)``, ``weight_hh`` ``(4h, h)``, ``bias`` ``(4h,)`` (PyTorch's
    ``bias_ih + bias_hh``).
    """

    _ndims = {"weight_ih": 2, "weight_hh": 2, "bias": 1}

    def __init__(self, in_size: int, hidden_size: int, *, bias: bool = True,
                 init: Callable = glorot_uniform, init_recurrent: Callable = glorot_uniform,
                 dtype: Any = np.float32, rng: Any = None):
        _init_cell(self, in_size, int(hidden_size), 4, init, init_recurrent, dtype, rng)
        self.bias = zeros(None, (4 * int(hidden_size),), dtype) if bias else None
        self._freeze()

    def initial_carry(self, batch: Any = None) -> tuple[Any, Any]:
        """``(h, c)``, both zeros of shape ``(batch, hidden)``."""
        return self._zeros(batch), self._zeros(batch)

    def __call__(self, carry: Any, x: Any) -> tuple[tuple[Any, Any], Any]:
        h, c = self._start(carry, x)
        n = self.hidden_size
        g = x @ self.weight_ih.T + h @ self.weight_hh.T
        if self.bias is not None:
            g = g + self.bias
        i = sigmoid(g[..., :n])
        f = sigmoid(g[..., n:2 * n])
        cell = np.tanh(g[..., 2 * n:3 * n])
        o = sigmoid(g[..., 3 * n:])
        c = f * c + i * cell
        h = o * np.tanh(c)
        return (h, c), h


@functor("weight_ih", "weight_hh", "bias_ih", "bias_hh")
class GRUCell(_Cell):
    """Gated recurrent unit with PyTorch's equations (gate order reset, update, new)::

        r = sigmoid(x W_ir + b_ir + h W_hr + b_hr)
        z = sigmoid(x W_iz + b_iz + h W_hz + b_hz)
        n = tanh(x W_in + b_in + r * (h W_hn + b_hn))
        h' = (1 - z) * n + z * h

    ``weight_ih`` ``(3h, in)``, ``weight_hh`` ``(3h, h)``, ``bias_ih`` and ``bias_hh``
    ``(3h,)``: two biases, because ``b_hn`` sits inside ``r * (...)``.
    """

    _ndims = {"weight_ih": 2, "weight_hh": 2, "bias_ih": 1, "bias_hh": 1}

    def __init__(self, in_size: int, hidden_size: int, *, bias: bool = True,
                 init: Callable = glorot_uniform, init_recurrent: Callable = glorot_uniform,
                 dtype: Any = np.float32, rng: Any = None):
        _init_cell(self, in_size, int(hidden_size), 3, init, init_recurrent, dtype, rng)
        b = (lambda: zeros(None, (3 * int(hidden_size),), dtype)) if bias else (lambda: None)
        self.bias_ih, self.bias_hh = b(), b()
        self._freeze()

    def __call__(self, carry: Any, x: Any) -> tuple[Any, Any]:
        h = self._start(carry, x)
        n = self.hidden_size
        gi = x @ self.weight_ih.T
        gh = h @ self.weight_hh.T
        if self.bias_ih is not None:
            gi = gi + self.bias_ih
            gh = gh + self.bias_hh
        r = sigmoid(gi[..., :n] + gh[..., :n])
        z = sigmoid(gi[..., n:2 * n] + gh[..., n:2 * n])
        new = np.tanh(gi[..., 2 * n:] + r * gh[..., 2 * n:])
        h = (1 - z) * new + z * h
        return h, h


@functor("cell")
class Recurrence(Module):
    """Run ``cell`` along time: ``(N, T, in) -> (N, T, hidden)`` (or unbatched ``(T, in)``).

    ``layer(x, carry=None)`` returns the outputs of every step (the carry starts
    at zeros unless given); ``layer.scan(carry, x)`` returns ``(final_carry,
    outputs)``. ``return_carry=True`` makes ``layer(x)`` return ``(final_carry,
    outputs)`` too. Any callable ``carry, y = cell(carry, x_t)`` works as a cell
    (with ``carry=None`` give the initial carry explicitly).
    """

    def __init__(self, cell: Any, *, return_carry: bool = False):
        self.cell = cell
        self.return_carry = bool(return_carry)
        self._freeze()

    def scan(self, carry: Any, x: Any) -> tuple[Any, Any]:
        """``(final_carry, outputs)`` over the time axis of ``x`` (axis 1, or 0 when unbatched)."""
        s = _shape(x)
        if len(s) not in (2, 3):
            raise shape_error(self, x, "(N, T, features) or (T, features)")
        batched = len(s) == 3
        ys = []
        for t in range(s[1] if batched else s[0]):
            carry, y = self.cell(carry, x[:, t] if batched else x[t])
            ys.append(y)
        if not ys:
            raise shape_error(self, x, "at least one time step")
        return carry, fnp.stack(ys, axis=1 if batched else 0)

    def __call__(self, x: Any, carry: Any = None) -> Any:
        carry, ys = self.scan(carry, x)
        return (carry, ys) if self.return_carry else ys

    def _repr_inner(self) -> str:
        extra = "; return_carry=True" if self.return_carry else ""
        return f"Recurrence({describe(self.cell)}{extra})"
