"""MultiHeadAttention, dot_product_attention and the positional embeddings against their definitions.

The reference is PyTorch's ``nn.MultiheadAttention`` arithmetic written out in
plain NumPy below (no funcflux call in it), with loops over the batch and the
heads, so that it shares no reshaping code with the layer.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import funcflux as ff
from funcflux import nn
from funcflux.test_util import check_grads

R = np.random.default_rng(0)


# ----------------------------------------------------------------------------- the reference
def ref_softmax_rows(s: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Softmax of each row among the kept entries; a row with none kept is all zeros."""
    out = np.zeros_like(s)
    for i in range(s.shape[0]):
        k = keep[i]
        if k.any():
            e = np.exp(s[i, k] - s[i, k].max())
            out[i, k] = e / e.sum()
    return out


def ref_mha(p: dict, q, k, v, H, kpm=None, am=None, causal=False):
    """PyTorch's multi-head attention forward, batch-first, one example and head at a time.

    ``p`` holds wq, bq, wk, bk, wv, bv, wo, bo (weights (out, in)); masks follow
    PyTorch's MHA convention (bool True = masked, float = added).
    Returns (out (N, L, E), weights per head (N, H, L, S)).
    """
    N, L, E = q.shape
    S = k.shape[1]
    d = E // H
    out = np.zeros((N, L, E))
    weights = np.zeros((N, H, L, S))
    for n in range(N):
        Q = q[n] @ p["wq"].T + p["bq"]
        K = k[n] @ p["wk"].T + p["bk"]
        V = v[n] @ p["wv"].T + p["bv"]
        heads = []
        for h in range(H):
            sl = slice(h * d, (h + 1) * d)
            s = (Q[:, sl] @ K[:, sl].T) / math.sqrt(d)
            keep = np.ones((L, S), bool)
            if kpm is not None:
                if kpm.dtype == bool:
                    keep &= ~kpm[n][None, :]
                else:
                    s = s + kpm[n][None, :]
            if am is not None:
                m = am if am.ndim == 2 else am[n * H + h]
                if m.dtype == bool:
                    keep &= ~m
                else:
                    s = s + m
            if causal:
                keep &= np.arange(S)[None, :] <= np.arange(L)[:, None]
            keep &= np.isfinite(s)
            w = ref_softmax_rows(s, keep)
            weights[n, h] = w
            heads.append(w @ V[:, sl])
        out[n] = np.concatenate(heads, axis=1) @ p["wo"].T + p["bo"]
    return out, weights


def params(m: nn.MultiHeadAttention) -> dict:
    return {"wq": m.q_proj.weight, "bq": m.q_proj.bias, "wk": m.k_proj.weight,
            "bk": m.k_proj.bias, "wv": m.v_proj.weight, "bv": m.v_proj.bias,
            "wo": m.out_proj.weight, "bo": m.out_proj.bias}


def random_mha(E, H, kdim=None, vdim=None, seed=0) -> nn.MultiHeadAttention:
    """A float64 layer with non-zero biases (the default ones are zero and would hide errors)."""
    m = nn.MultiHeadAttention(E, H, kdim=kdim, vdim=vdim, dtype=np.float64, rng=seed)
    r = np.random.default_rng(seed + 100)
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        m = ff.tree.at(lambda t, name=name: getattr(t, name).bias, m,
                       replace=r.normal(size=E))
    return m


# ----------------------------------------------------------------------------- known values
def test_hand_computed_single_head():
    """One head, identity projections, zero biases: softmax(q k^T / sqrt(2)) v by hand."""
    m = nn.MultiHeadAttention(2, 1, dtype=np.float64)
    eye = np.eye(2)
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        m = ff.tree.at(lambda t, name=name: getattr(t, name).weight, m, replace=eye)
    q = np.array([[[1.0, 0.0]]])
    k = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    v = np.array([[[10.0, 0.0], [0.0, 10.0]]])
    out, w = m(q, k, v, need_weights=True)
    a = math.exp(1 / math.sqrt(2))
    np.testing.assert_allclose(w, [[[a / (a + 1), 1 / (a + 1)]]], rtol=1e-14)
    np.testing.assert_allclose(out, [[[10 * a / (a + 1), 10 / (a + 1)]]], rtol=1e-14)


@pytest.mark.parametrize("kdim,vdim", [(None, None), (3, 5)])
def test_matches_reference(kdim, vdim):
    E, H, N, L, S = 6, 3, 2, 4, 5
    m = random_mha(E, H, kdim, vdim)
    q = R.normal(size=(N, L, E))
    k = R.normal(size=(N, S, kdim or E))
    v = R.normal(size=(N, S, vdim or E))
    want, wh = ref_mha(params(m), q, k, v, H)
    out, w = m(q, k, v, need_weights=True)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(w, wh.mean(axis=1), rtol=1e-12, atol=1e-14)
    out2, w2 = m(q, k, v, need_weights=True, average_attn_weights=False)
    np.testing.assert_allclose(out2, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(w2, wh, rtol=1e-12, atol=1e-14)
    assert w2.shape == (N, H, L, S)
    np.testing.assert_allclose(m(q, k, v), want, rtol=1e-12, atol=1e-12)


def test_self_attention_defaults_key_and_value():
    m = random_mha(4, 2)
    x = R.normal(size=(3, 5, 4))
    np.testing.assert_array_equal(m(x), m(x, x, x))
    kv = R.normal(size=(3, 6, 4))
    np.testing.assert_array_equal(m(x, kv), m(x, kv, kv))


def test_unbatched_sequence():
    m = random_mha(4, 2)
    x, kv = R.normal(size=(5, 4)), R.normal(size=(7, 4))
    pad = np.zeros(7, bool)
    pad[-2:] = True
    out, w = m(x, kv, key_padding_mask=pad, need_weights=True, average_attn_weights=False)
    want, ww = m(x[None], kv[None], key_padding_mask=pad[None], need_weights=True,
                 average_attn_weights=False)
    np.testing.assert_allclose(out, want[0], rtol=1e-14)
    np.testing.assert_allclose(w, ww[0], rtol=1e-14)
    assert out.shape == (5, 4) and w.shape == (2, 5, 7)


def test_masks_against_reference():
    E, H, N, L, S = 4, 2, 2, 3, 5
    m = random_mha(E, H)
    q, k, v = R.normal(size=(N, L, E)), R.normal(size=(N, S, E)), R.normal(size=(N, S, E))
    kpm = np.array([[False, False, False, True, True], [False, True, False, False, False]])
    am2 = R.random((L, S)) < 0.3
    am2[:, 0] = False  # no empty rows here; those have their own test
    am3 = R.normal(size=(N * H, L, S))
    kpm_f = np.where(kpm, -np.inf, 0.0)
    cases = [dict(kpm=kpm), dict(am=am2), dict(am=am3), dict(kpm=kpm_f),
             dict(kpm=kpm, am=am2, causal=True), dict(causal=True), dict(kpm=kpm, am=am3)]
    for c in cases:
        want, wh = ref_mha(params(m), q, k, v, H, **c)
        out, w = m(q, k, v, key_padding_mask=c.get("kpm"), attn_mask=c.get("am"),
                   is_causal=c.get("causal", False), need_weights=True,
                   average_attn_weights=False)
        np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12, err_msg=str(c.keys()))
        np.testing.assert_allclose(w, wh, rtol=1e-12, atol=1e-14, err_msg=str(c.keys()))
    # masked keys get exactly zero weight
    _, w = m(q, k, v, key_padding_mask=kpm, need_weights=True)
    assert np.all(w[0, :, 3:] == 0) and np.all(w[1, :, 1] == 0)


def test_causal_is_the_lower_triangle():
    m = random_mha(4, 1)
    x = R.normal(size=(1, 4, 4))
    _, w = m(x, is_causal=True, need_weights=True)
    assert np.all(np.triu(w[0], 1) == 0) and np.all(w[0][np.tril_indices(4)] > 0)
    np.testing.assert_allclose(w[0].sum(-1), 1.0)
    # the output at position i does not depend on later positions
    y = m(x, is_causal=True)
    x2 = x.copy()
    x2[0, 2:] += 1.0
    np.testing.assert_array_equal(m(x2, is_causal=True)[0, :2], y[0, :2])


def test_fully_masked_rows_give_zeros_not_nan():
    m = random_mha(4, 2)
    q, kv = R.normal(size=(2, 3, 4)), R.normal(size=(2, 5, 4))
    kpm = np.zeros((2, 5), bool)
    kpm[1] = True  # the second example's keys are all padding
    out, w = m(q, kv, key_padding_mask=kpm, need_weights=True)
    assert np.all(np.isfinite(out)) and np.all(w[1] == 0)
    np.testing.assert_allclose(out[1], np.broadcast_to(m.out_proj.bias, (3, 4)), rtol=1e-14)
    want, _ = ref_mha(params(m), q, kv, kv, 2, kpm=kpm)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
    # the same with a float mask of -inf, and gradients stay finite
    kpm_f = np.where(kpm, -np.inf, 0.0)
    np.testing.assert_allclose(m(q, kv, key_padding_mask=kpm_f), out, rtol=1e-12)
    g = ff.grad(lambda m, q: np.sum(m(q, kv, key_padding_mask=kpm) ** 2), argnums=(0, 1))(m, q)
    assert all(np.all(np.isfinite(a)) for a in ff.tree.leaves(g))
    assert np.all(g[1][1] == 0)  # the dead example's queries do not matter


def test_gradients_second_order():
    m = random_mha(4, 2, kdim=3, vdim=2)
    q, k, v = R.normal(size=(2, 3, 4)), R.normal(size=(2, 4, 3)), R.normal(size=(2, 4, 2))
    kpm = np.array([[False, False, True, False], [False, False, False, False]])
    check_grads(lambda m, q, k, v: m(q, k, v, key_padding_mask=kpm, is_causal=True),
                (m, q, k, v), order=2)
    check_grads(lambda m, q: m(q, need_weights=True, average_attn_weights=False)[1],
                (random_mha(4, 2), q), order=2)


def test_vmap_over_an_extra_batch_axis_matches_a_loop():
    m = random_mha(4, 2)
    x = R.normal(size=(3, 2, 5, 4))          # 3 groups of 2 sequences
    pad = R.random((3, 2, 5)) < 0.3
    pad[..., 0] = False
    f = lambda x, pad: m(x, key_padding_mask=pad, is_causal=True, need_weights=True)  # noqa: E731
    out, w = ff.vmap(f)(x, pad)
    for i in range(3):
        o, ww = f(x[i], pad[i])
        np.testing.assert_allclose(out[i], o, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(w[i], ww, rtol=1e-12, atol=1e-14)
    # per-example gradients of the parameters: vmap(grad) against a loop of grad
    loss = lambda m, x: np.sum(m(x, is_causal=True) ** 2)  # noqa: E731
    g = ff.vmap(ff.grad(loss), in_axes=(None, 0))(m, x[0])
    for i in range(2):
        gi = ff.grad(loss)(m, x[0, i])
        np.testing.assert_allclose(g.q_proj.weight[i], gi.q_proj.weight, rtol=1e-10)


def test_float32_stays_float32_and_init_like_pytorch():
    m = nn.MultiHeadAttention(16, 4, rng=0)
    assert m.q_proj.weight.dtype == np.float32
    assert m(np.ones((1, 2, 16), np.float32)).dtype == np.float32
    # in-projections: one Xavier draw over (3E, E) -> bound sqrt(6 / (E + 3E))
    w = np.concatenate([m.q_proj.weight, m.k_proj.weight, m.v_proj.weight])
    assert np.abs(w).max() <= math.sqrt(6 / 64) and np.abs(w).max() > 0.8 * math.sqrt(6 / 64)
    assert np.abs(m.out_proj.weight).max() <= 1 / 4
    for d in (m.q_proj, m.k_proj, m.v_proj, m.out_proj):
        assert np.all(d.bias == 0)
    m2 = nn.MultiHeadAttention(16, 4, kdim=8, bias=False, rng=0)
    assert m2.k_proj.weight.shape == (16, 8) and m2.k_proj.bias is None
    assert np.abs(m2.k_proj.weight).max() <= math.sqrt(6 / 24)
    assert repr(m2).startswith("MultiHeadAttention(16, num_heads=4, kdim=8, bias=False)")
    np.testing.assert_array_equal(nn.MultiHeadAttention(16, 4, rng=0).q_proj.weight,
                                  m.q_proj.weight)  # the same seed, the same layer


def test_errors_name_the_argument_and_shapes():
    with pytest.raises(ValueError, match=r"embed_dim=10 is not divisible by num_heads=3.*1, 2, 5, 10"):
        nn.MultiHeadAttention(10, 3)
    m = nn.MultiHeadAttention(4, 2, rng=0)
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"key_padding_mask of shape \(2, 4\).*\(2, 3\), True where"):
        m(x, key_padding_mask=np.zeros((2, 4), bool))
    with pytest.raises(ValueError, match=r"attn_mask of shape \(3, 4\).*\(3, 3\) or \(4, 3, 3\)"):
        m(x, attn_mask=np.zeros((3, 4), bool))
    with pytest.raises(TypeError, match="key_padding_mask must be boolean"):
        m(x, key_padding_mask=np.zeros((2, 3), int))
    with pytest.raises(ValueError, match=r"got query of shape \(2, 3, 5\); expected \(N, L, 4\)"):
        m(np.ones((2, 3, 5)))
    with pytest.raises(ValueError, match=r"got key of shape \(2, 3, 5\); expected \(N, S, 4\)"):
        m(x, np.ones((2, 3, 5)))
    with pytest.raises(ValueError, match="different batch sizes"):
        m(x, np.ones((3, 3, 4)))
    with pytest.raises(ValueError, match="same length S"):
        m(x, np.ones((2, 3, 4)), np.ones((2, 5, 4)))
    with pytest.raises(AttributeError, match="immutable"):
        m.num_heads = 4


# ----------------------------------------------------------------------------- the function
def test_dot_product_attention_definition():
    q, k, v = R.normal(size=(2, 3, 4)), R.normal(size=(2, 5, 4)), R.normal(size=(2, 5, 6))
    s = q @ np.swapaxes(k, -1, -2) / 2.0
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    out, w = nn.dot_product_attention(q, k, v, return_weights=True)
    np.testing.assert_allclose(w, p, rtol=1e-13)
    np.testing.assert_allclose(out, p @ v, rtol=1e-13)
    # mask: True = attend (JAX's convention); bias is added; scale replaces 1/sqrt(E)
    mask = R.random((3, 5)) < 0.6
    mask[:, 0] = True
    bias = R.normal(size=(2, 1, 5))
    out, w = nn.dot_product_attention(q, k, v, mask=mask, bias=bias, scale=0.3,
                                      return_weights=True)
    want = np.stack([ref_softmax_rows(q[i] @ k[i].T * 0.3 + bias[i], mask) for i in range(2)])
    np.testing.assert_allclose(w, want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(out, want @ v, rtol=1e-12)
    causal = nn.dot_product_attention(q, k, v, is_causal=True)
    tri = np.arange(5)[None, :] <= np.arange(3)[:, None]
    np.testing.assert_allclose(causal, nn.dot_product_attention(q, k, v, mask=tri), rtol=1e-14)
    check_grads(lambda q, k, v: nn.dot_product_attention(q, k, v, mask=mask, bias=bias),
                (q, k, v), order=2)


def test_dot_product_attention_errors():
    q, k = np.ones((3, 4)), np.ones((5, 4))
    with pytest.raises(ValueError, match=r"key \(5, 4\) and value \(6, 4\) have different lengths"):
        nn.dot_product_attention(q, k, np.ones((6, 4)))
    with pytest.raises(ValueError, match="different feature sizes 4 and 3"):
        nn.dot_product_attention(q, np.ones((5, 3)), k)
    with pytest.raises(ValueError, match=r"mask of shape \(3, 4\) does not broadcast to .*3, 5"):
        nn.dot_product_attention(q, k, k, mask=np.ones((3, 4), bool))
    with pytest.raises(TypeError, match="mask must be boolean.*bias="):
        nn.dot_product_attention(q, k, k, mask=np.zeros((3, 5)))


# ----------------------------------------------------------------------------- positional
def test_sinusoidal_embedding_known_values():
    t = nn.sinusoidal_embedding(50, 6, dtype=np.float64)
    for p in (0, 1, 7, 49):
        for i in range(3):
            a = p / 10000 ** (2 * i / 6)
            assert t[p, 2 * i] == pytest.approx(math.sin(a), abs=1e-15)
            assert t[p, 2 * i + 1] == pytest.approx(math.cos(a), abs=1e-15)
    odd = nn.sinusoidal_embedding(4, 5, dtype=np.float64)
    assert odd.shape == (4, 5)
    np.testing.assert_allclose(odd[:, 4], np.sin(np.arange(4) / 10000 ** (4 / 5)))
    np.testing.assert_array_equal(nn.sinusoidal_embedding(4, 5, dtype=np.float64)[:, :4],
                                  nn.sinusoidal_embedding(4, 5, dtype=np.float64)[:, :4])
    assert nn.sinusoidal_embedding(3, 4).dtype == np.float32
    assert nn.sinusoidal_embedding(0, 4).shape == (0, 4)


def test_positional_embedding_layers():
    x = R.normal(size=(2, 5, 6))
    s = nn.SinusoidalPositionalEmbedding(6)
    np.testing.assert_allclose(s(x), x + nn.sinusoidal_embedding(5, 6, dtype=np.float64),
                               rtol=1e-15)
    assert s(x.astype(np.float32)).dtype == np.float32
    assert repr(s) == "SinusoidalPositionalEmbedding(6)" and ff.fleaves(s) == []
    pe = nn.PositionalEmbedding(8, 6, dtype=np.float64, rng=0)
    np.testing.assert_allclose(pe(x), x + pe.weight[:5], rtol=1e-15)
    np.testing.assert_allclose(pe(x[0]), x[0] + pe.weight[:5], rtol=1e-15)  # unbatched
    assert 0.01 < pe.weight.std() < 0.03  # N(0, 0.02^2)
    # gradients: the used rows get the summed cotangent, the unused ones zero
    g = ff.grad(lambda pe: np.sum(pe(x) * 2.0))(pe)
    np.testing.assert_allclose(g.weight[:5], 4.0)
    np.testing.assert_array_equal(g.weight[5:], 0.0)
    check_grads(lambda pe, x: pe(x), (pe, x), order=2)
    check_grads(lambda x: s(x), (x,), order=2)
    y = ff.vmap(pe)(x)
    np.testing.assert_allclose(y, pe(x), rtol=1e-15)
    with pytest.raises(ValueError, match=r"length 9 .* positions 0..7: build it with max_len >= 9"):
        pe(np.zeros((1, 9, 6)))
    with pytest.raises(ValueError, match=r"expected \(N, L, 6\)"):
        pe(np.zeros((1, 5, 4)))
    with pytest.raises(ValueError, match=r"expected \(N, L, 6\)"):
        s(np.zeros(6))


def test_a_small_transformer_block_trains():
    """Embedding + positions + causal attention + LayerNorm: the loss falls (smoke test)."""
    from funcflux import losses, optim
    V, E = 5, 8

    def forward(p, ids):
        x = p["pos"](p["emb"](ids))
        x = x + p["attn"](x, is_causal=True)
        return p["out"](p["ln"](x))

    p = {"emb": nn.Embedding(V, E, rng=0), "pos": nn.SinusoidalPositionalEmbedding(E),
         "attn": nn.MultiHeadAttention(E, 2, rng=2), "ln": nn.LayerNorm(E),
         "out": nn.Dense(E, V, rng=1)}
    ids = np.array([[0, 1, 2, 3, 4, 0], [1, 2, 3, 4, 0, 1]])  # the next id is (id + 1) % 5
    loss = lambda p: losses.logitcrossentropy(forward(p, ids[:, :-1]), ids[:, 1:])  # noqa: E731
    state = optim.setup(optim.adam(0.05), p)
    first = float(loss(p))
    for _ in range(30):
        state, p = optim.step(state, p, ff.grad(loss)(p))
    assert float(loss(p)) < 0.2 * first
