"""Attention: ``dot_product_attention`` and the ``MultiHeadAttention`` layer (PyTorch's arithmetic).

``MultiHeadAttention(embed_dim, num_heads)`` projects queries, keys and values
with three ``Dense`` layers, splits the projections into ``num_heads`` heads of
``embed_dim // num_heads`` features, runs scaled dot-product attention in each
head, and mixes the heads back with a fourth ``Dense`` (``out_proj``). Inputs are
batch-first, ``(N, L, E)`` (or ``(L, E)`` for one sequence); there is no
sequence-first layout.

Masks follow the convention of the function they are given to, as in PyTorch:

- the layer's ``key_padding_mask`` and ``attn_mask`` (PyTorch's
  ``nn.MultiheadAttention``): a boolean ``True`` marks a position that may **not**
  be attended to; a float mask is **added** to the scores (``-inf`` masks);
- ``dot_product_attention``'s ``mask`` (JAX's ``jax.nn.dot_product_attention``
  and PyTorch's ``F.scaled_dot_product_attention``): ``True`` marks a position
  that **may** be attended to; ``bias`` is added to the scores.

A query whose every key is masked attends to nothing: its weights are all zero and
its output is zero (before ``out_proj``), with zero gradients. PyTorch returns
``nan`` there and JAX spreads the weight evenly over the masked keys; a zero is the
only one of the three that neither poisons a loss nor invents attention.

>>> import numpy as np
>>> from funcflux import nn
>>> mha = nn.MultiHeadAttention(8, 2, rng=0)
>>> mha
MultiHeadAttention(8, num_heads=2)  # 288 parameters, 1.125 KiB
>>> x = np.ones((3, 5, 8), np.float32)
>>> y, w = mha(x, is_causal=True, need_weights=True)
>>> y.shape, w.shape, w[0, 1].round(2).tolist()
((3, 5, 8), (3, 5, 5), [0.5, 0.5, 0.0, 0.0, 0.0])
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import numpy as fnp
from ..functors import functor
from ..ops.common import shape as _shape
from ..transforms.custom import stop_gradient
from .base import Module, array_module_of, as_rng
from .init import glorot_uniform, uniform
from .layers import Dense

__all__ = ["MultiHeadAttention", "dot_product_attention"]


# ----------------------------------------------------------------------------- the function
def _softmax_where(scores: Any, keep: Any) -> Any:
    """Softmax over the last axis of ``scores`` among the entries where ``keep`` is True.

    Masked entries are replaced by the dtype's most negative finite number (never
    ``-inf``: a row of ``-inf`` makes ``logsumexp`` infinite and its gradient ``nan``),
    so they get exactly zero weight; rows with nothing to keep are then set to zero.
    """
    if keep is None:
        return fnp.softmax(scores, axis=-1)
    low = np.finfo(np.result_type(getattr(scores, "dtype", np.float64))).min
    p = fnp.softmax(np.where(keep, scores, low), axis=-1)
    rows = stop_gradient(np.any(keep, axis=-1, keepdims=True))
    if isinstance(rows, np.ndarray) and rows.all():
        return p  # the common case (a causal mask): no row is empty, no extra op on the tape
    return np.where(rows, p, 0)


def _attend(q: Any, k: Any, v: Any, keep: Any, bias: Any, scale: float) -> tuple[Any, Any]:
    """``(softmax(q k^T * scale + bias) v, weights)`` over the last two axes."""
    # Scale q before the product, as PyTorch does: L*E multiplies instead of L*S.
    scores = np.matmul(q * scale, np.swapaxes(k, -1, -2))
    if bias is not None:
        scores = scores + bias
        # A -inf in a float mask removes that key just as a boolean mask does.
        finite = stop_gradient(scores) > -np.inf
        keep = finite if keep is None else np.logical_and(keep, finite)
    p = _softmax_where(scores, keep)
    return np.matmul(p, v), p


DPA_SHAPES = ("dot_product_attention: {what}; query is (..., L, E), key (..., S, E) and value "
              "(..., S, Ev), with the same leading axes (or axes that broadcast).")


def dot_product_attention(query: Any, key: Any, value: Any, *, mask: Any = None,
                          bias: Any = None, is_causal: bool = False, scale: float | None = None,
                          return_weights: bool = False) -> Any:
    """``softmax(query @ key^T * scale + bias) @ value`` over the last two axes.

    ``query`` is ``(..., L, E)``, ``key`` ``(..., S, E)`` and ``value``
    ``(..., S, Ev)``; the result is ``(..., L, Ev)`` (heads, if any, are one of the
    leading axes, as in PyTorch's ``F.scaled_dot_product_attention``). ``scale``
    defaults to ``1 / sqrt(E)``.

    Args:
        mask: booleans broadcastable to ``(..., L, S)``, **True where a query may
            attend to a key** (JAX's and PyTorch's ``scaled_dot_product_attention``
            convention, the opposite of ``MultiHeadAttention``'s masks).
        bias: floats broadcastable to ``(..., L, S)`` added to the scores; ``-inf``
            removes a key as ``mask`` does.
        is_causal: query ``i`` attends to keys ``0..i`` only (the lower triangle,
            aligned at the top-left corner when ``L != S``, as PyTorch).
        return_weights: also return the attention weights ``(..., L, S)``.

    A query that may attend to no key gets zero weights and a zero output, never ``nan``.

    >>> import numpy as np
    >>> q = k = np.eye(2)
    >>> v = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> out, w = dot_product_attention(q, k, v, is_causal=True, return_weights=True)
    >>> w.round(3).tolist()
    [[1.0, 0.0], [0.33, 0.67]]
    """
    sq, sk, sv = _shape(query), _shape(key), _shape(value)
    if len(sq) < 2 or len(sk) < 2 or len(sv) < 2:
        raise ValueError(DPA_SHAPES.format(
            what=f"got query {sq}, key {sk}, value {sv}, each needs at least two axes"))
    if sq[-1] != sk[-1]:
        raise ValueError(DPA_SHAPES.format(
            what=f"query {sq} and key {sk} have different feature sizes {sq[-1]} and {sk[-1]}"))
    if sk[-2] != sv[-2]:
        raise ValueError(DPA_SHAPES.format(
            what=f"key {sk} and value {sv} have different lengths {sk[-2]} and {sv[-2]}"))
    L, S = sq[-2], sk[-2]
    keep = None
    if mask is not None:
        if getattr(getattr(mask, "dtype", None), "kind", "") != "b":
            raise TypeError(f"dot_product_attention: mask must be boolean (True where a query "
                            f"may attend), got {getattr(mask, 'dtype', type(mask).__name__)}; "
                            f"pass additive float masks as bias=")
        _check_broadcast("mask", _shape(mask), (L, S))
        keep = mask
    if bias is not None:
        _check_broadcast("bias", _shape(bias), (L, S))
    if is_causal:
        causal = _causal(array_module_of(query), L, S)
        keep = causal if keep is None else np.logical_and(keep, causal)
    scale = 1.0 / math.sqrt(sq[-1]) if scale is None else float(scale)
    out, p = _attend(query, key, value, keep, bias, scale)
    return (out, p) if return_weights else out


def _check_broadcast(name: str, shape: tuple, last: tuple) -> None:
    if len(shape) < 2 or any(a not in (1, b) for a, b in zip(shape[-2:], last)):
        raise ValueError(f"dot_product_attention: {name} of shape {shape} does not broadcast to "
                         f"the scores' (..., L, S) = (..., {last[0]}, {last[1]})")


def _causal(xp: Any, L: int, S: int) -> Any:
    """``keep[i, j] = j <= i``: query ``i`` sees keys up to its own position."""
    return xp.tril(xp.ones((L, S), dtype=bool))


# ----------------------------------------------------------------------------- the layer
def _given(a: Any) -> Any:
    """An initialiser that returns ``a`` (to hand Dense a weight drawn elsewhere)."""
    return lambda rng, shape, dtype: np.asarray(a, dtype=dtype)


MHA_NEEDS_DIVISIBLE = ("MultiHeadAttention: embed_dim={e} is not divisible by num_heads={h}; each "
                       "head gets embed_dim // num_heads features, so choose num_heads among the "
                       "divisors of {e} (e.g. {hint}).")


@functor("q_proj", "k_proj", "v_proj", "out_proj")
class MultiHeadAttention(Module):
    """Multi-head attention with PyTorch's ``nn.MultiheadAttention`` arithmetic, batch-first.

    ``mha(query, key=None, value=None)`` (``key`` defaults to ``query`` and
    ``value`` to ``key``, as Flux: ``mha(x)`` is self-attention) computes, for each
    head ``h`` of ``d = embed_dim // num_heads`` features::

        q, k, v = q_proj(query), k_proj(key), v_proj(value)      # (N, L|S, embed_dim)
        head_h  = softmax(q_h k_h^T / sqrt(d) + masks) v_h       # (N, L, d)
        out     = out_proj(concat(head_1, ..., head_H))          # (N, L, embed_dim)

    with ``query`` of shape ``(N, L, embed_dim)``, ``key`` ``(N, S, kdim)`` and
    ``value`` ``(N, S, vdim)`` (``kdim`` and ``vdim`` default to ``embed_dim``);
    one unbatched sequence, ``(L, embed_dim)``, works too.

    Keyword arguments of the call:

    - ``key_padding_mask``: ``(N, S)``; boolean ``True`` ignores that key
      (padding), a float mask is added to the scores;
    - ``attn_mask``: ``(L, S)`` or ``(N * num_heads, L, S)``, the same conventions;
    - ``is_causal=True``: query ``i`` attends to keys ``0..i`` (combined with any
      other mask: a key masked by any of them is ignored);
    - ``need_weights=True``: return ``(out, weights)``, the weights averaged over
      the heads, ``(N, L, S)``, or per head, ``(N, num_heads, L, S)``, with
      ``average_attn_weights=False``.

    A query row with every key masked gets zero weights (see the module's notes).

    Parameters are four ``Dense`` layers, ``q_proj``, ``k_proj``, ``v_proj`` (to
    ``embed_dim`` from ``embed_dim``, ``kdim``, ``vdim``) and ``out_proj``, with
    biases unless ``bias=False``. Initialised as PyTorch: Xavier-uniform input
    projections (drawn as one ``(3 * embed_dim, embed_dim)`` matrix when
    ``kdim == vdim == embed_dim``), ``out_proj`` uniform on ``±1/sqrt(embed_dim)``,
    every bias zero.

    >>> import numpy as np
    >>> mha = MultiHeadAttention(4, 2, kdim=3, vdim=5, rng=0)
    >>> q, kv = np.ones((2, 6, 4)), np.ones((2, 7, 3))
    >>> mha(q, kv, np.ones((2, 7, 5))).shape
    (2, 6, 4)
    >>> pad = np.zeros((2, 7), bool); pad[:, 3:] = True        # keys 3..6 are padding
    >>> _, w = mha(q, kv, np.ones((2, 7, 5)), key_padding_mask=pad, need_weights=True)
    >>> w[0, 0].round(3).tolist()
    [0.333, 0.333, 0.333, 0.0, 0.0, 0.0, 0.0]
    """

    def __init__(self, embed_dim: int, num_heads: int, *, kdim: int | None = None,
                 vdim: int | None = None, bias: bool = True, dtype: Any = np.float32,
                 rng: Any = None):
        e, h = int(embed_dim), int(num_heads)
        if h < 1 or e < 1:
            raise ValueError(f"MultiHeadAttention: embed_dim and num_heads must be positive, got "
                             f"embed_dim={embed_dim}, num_heads={num_heads}")
        if e % h:
            hint = ", ".join([str(d) for d in range(1, e + 1) if e % d == 0][:6])
            raise ValueError(MHA_NEEDS_DIVISIBLE.format(e=e, h=h, hint=hint))
        kd = e if kdim is None else int(kdim)
        vd = e if vdim is None else int(vdim)
        rng = as_rng(rng)
        if kd == e and vd == e:
            # PyTorch's in_proj_weight: one Xavier draw over (3E, E), so fan_out is 3E.
            w = glorot_uniform(rng, (3 * e, e), dtype)
            wq, wk, wv = w[:e], w[e:2 * e], w[2 * e:]
        else:
            wq, wk, wv = (glorot_uniform(rng, (e, d), dtype) for d in (e, kd, vd))
        self.q_proj = Dense(e, e, init=_given(wq), bias=bias, dtype=dtype)
        self.k_proj = Dense(kd, e, init=_given(wk), bias=bias, dtype=dtype)
        self.v_proj = Dense(vd, e, init=_given(wv), bias=bias, dtype=dtype)
        # PyTorch keeps nn.Linear's default for out_proj.weight: uniform on ±1/sqrt(in).
        self.out_proj = Dense(e, e, init=uniform(1.0 / math.sqrt(e)), bias=bias, dtype=dtype,
                              rng=rng)
        self.num_heads = h
        self._freeze()

    @property
    def embed_dim(self) -> int:
        return int(self.q_proj.weight.shape[-2])

    @property
    def kdim(self) -> int:
        return int(self.k_proj.weight.shape[-1])

    @property
    def vdim(self) -> int:
        return int(self.v_proj.weight.shape[-1])

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    # -- the call ------------------------------------------------------------------------
    def __call__(self, query: Any, key: Any = None, value: Any = None, *,
                 key_padding_mask: Any = None, attn_mask: Any = None, is_causal: bool = False,
                 need_weights: bool = False, average_attn_weights: bool = True) -> Any:
        key = query if key is None else key
        value = key if value is None else value
        sq, sk, sv = _shape(query), _shape(key), _shape(value)
        batched = self._check_inputs(sq, sk, sv)
        if not batched:
            query, key, value = (fnp.expand_dims(a, 0) for a in (query, key, value))
            sq, sk, sv = (1,) + sq, (1,) + sk, (1,) + sv
        n, L, S, H, d = sq[0], sq[1], sk[1], self.num_heads, self.head_dim

        keep, bias = self._masks(query, n, L, S, batched, key_padding_mask, attn_mask, is_causal)

        def heads(x: Any, length: int) -> Any:  # (N, T, E) -> (N, H, T, d)
            return np.transpose(np.reshape(x, (n, length, H, d)), (0, 2, 1, 3))

        q = heads(self.q_proj(query), L)
        k = heads(self.k_proj(key), S)
        v = heads(self.v_proj(value), S)
        o, p = _attend(q, k, v, keep, bias, 1.0 / math.sqrt(d))
        out = self.out_proj(np.reshape(np.transpose(o, (0, 2, 1, 3)), (n, L, H * d)))
        if not batched:
            out = out[0]
        if not need_weights:
            return out
        w = np.mean(p, axis=1) if average_attn_weights else p
        return out, (w if batched else w[0])

    def _check_inputs(self, sq: tuple, sk: tuple, sv: tuple) -> bool:
        """Whether the inputs are batched; a clear error when they do not fit the layer."""
        want = {"query": self.embed_dim, "key": self.kdim, "value": self.vdim}
        shapes = {"query": sq, "key": sk, "value": sv}
        for name, s in shapes.items():
            if len(s) not in (2, 3) or s[-1] != want[name]:
                t = "L" if name == "query" else "S"
                raise ValueError(
                    f"{self._repr_inner()} got {name} of shape {s}; expected "
                    f"(N, {t}, {want[name]}) or one unbatched sequence ({t}, {want[name]})")
        if not len(sq) == len(sk) == len(sv):
            raise ValueError(f"{self._repr_inner()}: query {sq}, key {sk} and value {sv} must all "
                             f"be batched (N, T, features) or all unbatched (T, features)")
        if len(sq) == 3 and not sq[0] == sk[0] == sv[0]:
            raise ValueError(f"{self._repr_inner()}: query {sq}, key {sk} and value {sv} have "
                             f"different batch sizes")
        if sk[-2] != sv[-2]:
            raise ValueError(f"{self._repr_inner()}: key {sk} and value {sv} must have the same "
                             f"length S (axis {len(sk) - 2})")
        return len(sq) == 3

    def _masks(self, like: Any, n: int, L: int, S: int, batched: bool, key_padding_mask: Any,
               attn_mask: Any, is_causal: bool) -> tuple[Any, Any]:
        """``(keep, bias)`` broadcastable to ``(N, H, L, S)``: keep is True where a query may
        attend (None: everywhere), bias is added to the scores (None: nothing)."""
        keep, bias = None, None
        H = self.num_heads
        masks = []
        if key_padding_mask is not None:
            want = (n, S) if batched else (S,)
            masks.append(("key_padding_mask", key_padding_mask, {want: (n, 1, 1, S)},
                          f"{want}, True where a key is padding"))
        if attn_mask is not None:
            fits = {(L, S): (L, S)}
            fits[(n * H, L, S) if batched else (H, L, S)] = (n, H, L, S)
            names = " or ".join(str(s) for s in fits)
            masks.append(("attn_mask", attn_mask, fits, f"{names}, True where a query may not "
                                                          f"attend to a key"))
        for name, m, fits, expected in masks:
            m = np.asarray(m) if isinstance(m, (list, tuple)) else m
            s = _shape(m)
            if s not in fits:
                raise ValueError(f"{self._repr_inner()}: {name} of shape {s} does not fit query "
                                 f"of length L={L} and key of length S={S}; expected {expected}")
            kind = getattr(getattr(m, "dtype", None), "kind", "")
            m = np.reshape(m, fits[s])
            if kind == "b":
                m = np.logical_not(m)
                keep = m if keep is None else np.logical_and(keep, m)
            elif kind == "f":
                bias = m if bias is None else bias + m
            else:
                raise TypeError(f"{self._repr_inner()}: {name} must be boolean (True = masked) "
                                f"or floating (added to the scores), got dtype "
                                f"{getattr(m, 'dtype', type(m).__name__)}")
        if is_causal:
            c = _causal(array_module_of(like), L, S)
            keep = c if keep is None else np.logical_and(keep, c)
        return keep, bias

    def _repr_inner(self) -> str:
        extra = ""
        if self.kdim != self.embed_dim:
            extra += f", kdim={self.kdim}"
        if self.vdim != self.embed_dim:
            extra += f", vdim={self.vdim}"
        if self.q_proj.bias is None:
            extra += ", bias=False"
        return f"MultiHeadAttention({self.embed_dim}, num_heads={self.num_heads}{extra})"
