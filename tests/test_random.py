"""funcflux.random: JAX's numbers, reproducibility, independence, distributions, transforms.

The literal constants below were recorded from jax.random 0.10.2 (threefry2x32,
jax_threefry_partitionable=True, its defaults; the 64-bit seeds and draws with
JAX_ENABLE_X64=1) and are compared bit for bit where funcflux promises that. Statistical
checks use fixed keys, so they are deterministic; their thresholds are loose (about
p = 0.001) but each is shown to fail on a slightly wrong generator.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import funcflux as ff
from funcflux import random as fr
from funcflux.test_util import check_grads
from tests import strict

K42 = fr.key(42)

# ----------------------------------------------------------------------------- JAX's numbers
SPLIT3 = [[1832780943, 270669613], [64467757, 2916123636], [2465931498, 255383827]]
SPLIT2x2 = [[[1832780943, 270669613], [64467757, 2916123636]],
            [[2465931498, 255383827], [3134548294, 894150801]]]
FOLD = {0: [1832780943, 270669613], 123456789: [801338215, 1032655946],
        4294967295: [2398536845, 3890976714]}
BITS32 = [2098992034, 2919706841, 2646866425, 2409546199, 1935504149, 2516274904]
BITS8 = [162, 217, 249, 215, 21, 216]
BITS16 = [5026, 12505, 63993, 49623, 29461, 20184]
BITS64 = [7871734211187709741, 276886910877598708, 10591095138341673235]  # x64
UNIFORM32_BITS = [1056585764, 1059981104, 1058915320, 1057988288, 1055308516, 1058405198]
UNIFORM16_BITS = [11488, 12824, 15310, 14862, 14128, 13548]
UNIFORM_M2_3_BITS = [1055070388, 1068700152, 1066035692, 1062083008, 1048684148, 1064167558]
UNIFORM64 = [0.4267275666499091, 0.015010069515314584, 0.5741444178995352]  # x64
BERNOULLI = [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
RANDINT = [4, 4, 1, 9, 9, 9, 7, 7]
RANDINT_WIDE = [977810628, 1236381714, -1367112521, -1019495231]
RANDINT_U8 = [196, 18, 183, 193, 141, 107]
CATEGORICAL = [3, 3, 3, 3, 3, 3, 1, 1, 1, 1, 3, 3]
PERMUTATION = [7, 4, 2, 5, 3, 6, 8, 9, 0, 1]
NORMAL = [-0.02830461598932743, 0.4671318531036377, 0.2957029640674591, 0.15354591608047485,
          -0.12403281778097153, 0.21692314743995667]
TRUNCATED = [0.14770005643367767, 0.5684449076652527, 0.42102551460266113, 0.29997000098228455,
             0.0691138207912445, 0.3537633717060089]


def _eq(a, expected, dtype):
    a = np.asarray(a)
    assert a.dtype == np.dtype(dtype), (a.dtype, dtype)
    np.testing.assert_array_equal(a, np.array(expected, dtype=dtype))


def test_keys_split_and_fold_in_equal_jax():
    _eq(fr.key(0), [0, 0], np.uint32)
    _eq(K42, [0, 42], np.uint32)
    _eq(fr.PRNGKey(2 ** 32 - 1), [0, 4294967295], np.uint32)
    _eq(fr.split(K42, 3), SPLIT3, np.uint32)
    _eq(fr.split(K42, (2, 2)), SPLIT2x2, np.uint32)
    _eq(fr.split(K42), SPLIT3[:2], np.uint32)
    for d, want in FOLD.items():
        _eq(fr.fold_in(K42, d), want, np.uint32)
        _eq(fr.fold_in(K42, np.uint32(d)), want, np.uint32)
    _eq(fr.fold_in(K42, -1), FOLD[4294967295], np.uint32)  # modulo 2**32


def test_64_bit_seeds_equal_jax_with_x64():
    _eq(fr.key(-1), [4294967295, 4294967295], np.uint32)
    _eq(fr.key(2 ** 40 + 5), [256, 5], np.uint32)
    _eq(fr.key(2 ** 63 - 1), [2147483647, 4294967295], np.uint32)
    _eq(fr.key(-2 ** 63), [2147483648, 0], np.uint32)
    _eq(fr.key(np.int64(-1)), [4294967295, 4294967295], np.uint32)
    _eq(fr.key(np.int32(-1)), [0, 4294967295], np.uint32)  # a 32-bit seed: zero high word
    _eq(fr.key(np.array(42)), [0, 42], np.uint32)


def test_bits_and_uniform_equal_jax():
    _eq(fr.bits(K42, (6,)), BITS32, np.uint32)
    _eq(fr.bits(K42, (2, 3)), np.reshape(BITS32, (2, 3)), np.uint32)
    _eq(fr.bits(K42, (6,), np.uint8), BITS8, np.uint8)
    _eq(fr.bits(K42, (6,), np.uint16), BITS16, np.uint16)
    _eq(fr.bits(K42, (3,), np.uint64), BITS64, np.uint64)
    _eq(fr.uniform(K42, (6,)).view(np.uint32), UNIFORM32_BITS, np.uint32)
    _eq(fr.uniform(K42, (6,), np.float16).view(np.uint16), UNIFORM16_BITS, np.uint16)
    _eq(fr.uniform(K42, (6,), minval=-2.0, maxval=3.0).view(np.uint32), UNIFORM_M2_3_BITS,
        np.uint32)
    _eq(fr.uniform(K42, (3,), np.float64), UNIFORM64, np.float64)


def test_bernoulli_randint_categorical_permutation_equal_jax():
    _eq(fr.bernoulli(K42, 0.3, (12,)), np.array(BERNOULLI, bool), bool)
    _eq(fr.randint(K42, (8,), 0, 10), RANDINT, np.int32)
    _eq(fr.randint(K42, (4,), -2 ** 31, 2 ** 31 - 1), RANDINT_WIDE, np.int32)
    _eq(fr.randint(K42, (6,), 0, 256, np.uint8), RANDINT_U8, np.uint8)
    logits = np.log(np.array([0.1, 0.2, 0.3, 0.4], np.float32))
    _eq(fr.categorical(K42, logits, shape=(12,)), CATEGORICAL, np.int32)
    _eq(fr.permutation(K42, 10), PERMUTATION, np.int32)


def test_normal_and_truncated_normal_close_to_jax():
    """Same bits and transform; erfinv differs from XLA's by float32 rounding only."""
    np.testing.assert_allclose(fr.normal(K42, (6,)), NORMAL, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fr.truncated_normal(K42, -1.0, 2.0, (6,)), TRUNCATED,
                               rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- reproducibility
LOGITS = np.array([[0.0, 1.0, 2.0], [2.0, 0.0, -1.0]])
ROWS = np.arange(24.0).reshape(8, 3)
DRAWS = {
    "bits": lambda k: fr.bits(k, (5,)),
    "uniform": lambda k: fr.uniform(k, (5,), minval=-1.0, maxval=2.0),
    "normal": lambda k: fr.normal(k, (2, 3)),
    "bernoulli": lambda k: fr.bernoulli(k, 0.4, (7,)),
    "randint": lambda k: fr.randint(k, (6,), -3, 9),
    "categorical": lambda k: fr.categorical(k, LOGITS, shape=(8, 2)),
    "permutation": lambda k: fr.permutation(k, ROWS, axis=0),
    "truncated_normal": lambda k: fr.truncated_normal(k, -0.5, 1.5, (5,)),
    "split": lambda k: fr.split(k, 3),
    "fold_in": lambda k: fr.fold_in(k, 11),
}


@pytest.mark.parametrize("name", sorted(DRAWS))
def test_same_key_same_draw_other_key_other_draw(name):
    f = DRAWS[name]
    a = f(fr.key(1))
    np.testing.assert_array_equal(a, f(fr.key(1)))
    np.testing.assert_array_equal(a, f(np.array([0, 1], np.uint32)))  # a key is just its data
    assert not np.array_equal(a, f(fr.key(2)))


def test_keys_are_leaves_stackable_and_saveable(tmp_path):
    keys = [fr.key(i) for i in range(3)]
    stacked = ff.tree.stack(keys)
    assert stacked.shape == (3, 2) and stacked.dtype == np.uint32
    state = {"key": fr.key(7), "keys": fr.split(fr.key(7), 4)}
    ff.save(tmp_path / "k.npz", state)
    back = ff.load(tmp_path / "k.npz", state)
    np.testing.assert_array_equal(back["key"], state["key"])
    np.testing.assert_array_equal(back["keys"], state["keys"])
    np.testing.assert_array_equal(fr.normal(back["key"], (3,)), fr.normal(state["key"], (3,)))


# ----------------------------------------------------------------------------- independence
def _corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_split_children_differ_and_their_draws_are_uncorrelated():
    n = 20_000
    children = fr.split(fr.key(0), 8)
    assert len({tuple(c) for c in children.tolist()}) == 8
    assert not any(np.array_equal(c, fr.key(0)) for c in children)
    draws = [fr.uniform(c, (n,)) for c in children]
    # |corr| of independent uniforms: sd 1/sqrt(n) = 0.007; 0.03 is over 4 sd
    assert max(abs(_corr(draws[i], draws[j])) for i in range(8) for j in range(i)) < 0.03
    # consecutive fold_in data, and a child against its parent
    folded = [fr.uniform(fr.fold_in(fr.key(0), i), (n,)) for i in range(4)]
    assert max(abs(_corr(folded[i], folded[i + 1])) for i in range(3)) < 0.03
    assert abs(_corr(fr.uniform(fr.key(0), (n,)), draws[0])) < 0.03
    # neighbouring values within one draw (lag-1 correlation)
    u = fr.uniform(fr.key(3), (n,))
    assert abs(_corr(u[:-1], u[1:])) < 0.03
    assert abs(_corr(u[:-1], u[:-1] * 0.9 + u[1:] * 0.1)) > 0.03  # the test has power


def _chi2_uniform(u, bins=20):
    counts = np.histogram(u, bins=bins, range=(0.0, 1.0))[0]
    e = len(u) / bins
    return float(np.sum((counts - e) ** 2 / e))


CHI2_19_P001 = 43.82  # the 0.999 quantile of chi-square with 19 degrees of freedom


def test_uniform_bits_pass_a_chi_square_test():
    u = fr.uniform(fr.key(11), (50_000,), np.float64)
    assert _chi2_uniform(u) < CHI2_19_P001
    assert _chi2_uniform(u ** 1.03) > CHI2_19_P001  # a slightly wrong generator fails
    # every bit of the raw words is a fair coin
    b = fr.bits(fr.key(12), (20_000,))
    ones = np.array([np.mean((b >> np.uint32(i)) & np.uint32(1)) for i in range(32)])
    assert np.all(np.abs(ones - 0.5) < 4 * 0.5 / math.sqrt(20_000))


# ----------------------------------------------------------------------------- distributions
def _ks(x, cdf):
    x = np.sort(np.ravel(x))
    n = len(x)
    c = cdf(x)
    return float(max(np.max(np.arange(1, n + 1) / n - c), np.max(c - np.arange(n) / n)))


KS_P001 = 1.95  # sqrt(n) * D above this: p < 0.001
_erf = np.vectorize(math.erf)


def _phi(x):
    return 0.5 * (1 + _erf(np.asarray(x, np.float64) / math.sqrt(2)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normal_moments_and_ks(dtype):
    n = 40_000
    z = fr.normal(fr.key(5), (n,), dtype)
    assert z.dtype == dtype and np.all(np.isfinite(z))
    assert abs(z.mean()) < 4 / math.sqrt(n)
    assert abs(z.var() - 1) < 4 * math.sqrt(2 / n)
    assert abs(np.mean(z ** 3)) < 4 * math.sqrt(15 / n)
    assert abs(np.mean(z ** 4) - 3) < 4 * math.sqrt(96 / n)
    assert math.sqrt(n) * _ks(z, _phi) < KS_P001
    assert math.sqrt(n) * _ks(z * 1.06, _phi) > KS_P001  # a 6% wrong scale fails


def test_uniform_range_moments_and_ks():
    n = 40_000
    u = fr.uniform(fr.key(6), (n,), np.float64, minval=-2.0, maxval=3.0)
    assert u.min() >= -2.0 and u.max() < 3.0
    assert abs(u.mean() - 0.5) < 4 * 5 / math.sqrt(12 * n)
    assert abs(u.var() - 25 / 12) < 0.05
    assert math.sqrt(n) * _ks(u, lambda x: (x + 2) / 5) < KS_P001
    f = fr.uniform(fr.key(6), (1000,), np.float32)
    assert f.min() >= 0 and f.max() < 1 and f.dtype == np.float32


def test_bernoulli_rate():
    n = 40_000
    for p in (0.1, 0.5, 0.93):
        b = fr.bernoulli(fr.key(7), p, (n,))
        assert b.dtype == bool
        assert abs(b.mean() - p) < 4 * math.sqrt(p * (1 - p) / n)
    ps = np.array([0.0, 0.25, 1.0])
    b = fr.bernoulli(fr.key(8), ps, (10_000, 3))
    assert not b[:, 0].any() and b[:, 2].all() and abs(b[:, 1].mean() - 0.25) < 0.02
    assert fr.bernoulli(fr.key(8), ps).shape == (3,)


def test_categorical_frequencies():
    n = 40_000
    p = np.array([0.1, 0.2, 0.3, 0.4])
    s = fr.categorical(fr.key(9), np.log(p), shape=(n,))
    assert s.dtype == np.int32 and s.shape == (n,)
    counts = np.bincount(s, minlength=4)
    chi2 = float(np.sum((counts - n * p) ** 2 / (n * p)))
    assert chi2 < 16.27  # chi-square, 3 degrees of freedom, p = 0.001
    wrong = n * np.array([0.11, 0.2, 0.3, 0.39])
    assert float(np.sum((counts - wrong) ** 2 / wrong)) > 16.27
    # several distributions along axis 0, shape defaulting to the others
    logits = np.log(np.array([[0.9, 0.05], [0.1, 0.95]]))
    s = fr.categorical(fr.key(10), logits, axis=0, shape=(5000, 2))
    assert s.shape == (5000, 2)
    assert abs(s[:, 0].mean() - 0.1) < 0.02 and abs(s[:, 1].mean() - 0.95) < 0.02


def test_truncated_normal_bounds_and_mean():
    n = 40_000
    for lo, hi in ((-1.0, 2.0), (0.0, np.inf), (-np.inf, -1.5), (2.0, 3.0)):
        x = fr.truncated_normal(fr.key(13), lo, hi, (n,), np.float64)
        assert np.all(x > lo) and np.all(x < hi) and np.all(np.isfinite(x))
        pdf = lambda t: math.exp(-t * t / 2) / math.sqrt(2 * math.pi) if np.isfinite(t) else 0.0
        mass = float(_phi(hi) - _phi(lo))
        mean = (pdf(lo) - pdf(hi)) / mass
        assert abs(x.mean() - mean) < 4 * x.std() / math.sqrt(n), (lo, hi)
    x = fr.truncated_normal(fr.key(14), np.array([-1.0, 0.0]), 1.0)
    assert x.shape == (2,) and x.dtype == np.float32
    tight = fr.truncated_normal(fr.key(15), 0.5, 0.5000001, (100,), np.float64)
    assert np.all(tight > 0.5) and np.all(tight < 0.5000001)


def test_randint_range_and_frequencies():
    n = 40_000
    r = fr.randint(fr.key(16), (n,), -3, 4)
    assert r.dtype == np.int32 and r.min() == -3 and r.max() == 3
    counts = np.bincount(r + 3, minlength=7)
    assert float(np.sum((counts - n / 7) ** 2 / (n / 7))) < 22.46  # 6 dof, p = 0.001
    np.testing.assert_array_equal(fr.randint(fr.key(0), (4,), 5, 5), [5] * 4)  # empty: minval
    assert fr.randint(fr.key(0), (3,), 0, 10, np.int64).dtype == np.int64
    a = fr.randint(fr.key(0), (2, 3), np.array([0, 10, 100]), np.array([1, 11, 101]))
    np.testing.assert_array_equal(a, [[0, 10, 100]] * 2)


def test_permutation_is_a_permutation():
    for n in (1, 7, 100, 3000):  # 3000 takes two sorting rounds
        p = fr.permutation(fr.key(n), n)
        np.testing.assert_array_equal(np.sort(p), np.arange(n))
    assert not np.array_equal(fr.permutation(fr.key(0), 100), np.arange(100))
    x = np.arange(20.0).reshape(4, 5)
    for axis in (0, 1, -1):
        y = fr.permutation(fr.key(1), x, axis=axis)
        assert y.shape == x.shape
        ax = axis % 2
        np.testing.assert_array_equal(np.sort(y, axis=ax), x)  # each slice permuted...
        order = np.argsort(np.take(y, 0, axis=1 - ax))
        np.testing.assert_array_equal(np.take(y, order, axis=ax), x)  # ...the same way
    # each position is equally likely to hold each value
    firsts = np.array([fr.permutation(fr.key(i), 4)[0] for i in range(4000)])
    assert np.all(np.abs(np.bincount(firsts, minlength=4) / 4000 - 0.25) < 0.03)


def test_dtypes():
    k = fr.key(0)
    for dt in (np.float16, np.float32, np.float64):
        assert fr.uniform(k, (3,), dt).dtype == dt
        assert fr.normal(k, (3,), dt).dtype == dt
        assert fr.truncated_normal(k, -1, 1, (3,), dt).dtype == dt
    z = fr.normal(k, (20_000,), np.complex64)
    assert z.dtype == np.complex64 and abs(np.mean(np.abs(z) ** 2) - 1) < 0.05
    for dt in (np.uint8, np.uint16, np.uint32, np.uint64):
        assert fr.bits(k, (2,), dt).dtype == dt
    for dt in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32):
        assert fr.randint(k, (2,), 0, 5, dt).dtype == dt
    assert fr.bernoulli(k, np.float64(0.5), (2,)).dtype == bool
    assert fr.uniform(k).shape == () and fr.normal(k).shape == ()
    assert fr.uniform(k, 4).shape == (4,)  # an int shape


# ----------------------------------------------------------------------------- transforms
@pytest.mark.parametrize("name", sorted(DRAWS))
def test_vmap_over_keys_equals_a_loop(name):
    f = DRAWS[name]
    keys = fr.split(fr.key(3), 5)
    got = ff.vmap(f)(keys)
    want = np.stack([f(k) for k in keys])
    np.testing.assert_array_equal(got, want)
    assert all(not np.array_equal(got[0], got[i]) for i in range(1, 5))
    # keys stacked along axis 1, mapped with in_axes=1
    np.testing.assert_array_equal(ff.vmap(f, in_axes=1)(keys.T), want)


@pytest.mark.parametrize("name", sorted(DRAWS))
def test_an_unbatched_key_gives_every_member_the_same_draw(name):
    f = DRAWS[name]
    k = fr.key(4)
    got = ff.vmap(lambda x: (f(k), x))(np.zeros(3))[0]
    for row in got:
        np.testing.assert_array_equal(row, f(k))


def test_vmap_over_fold_in_data_and_seeds():
    k = fr.key(0)
    got = ff.vmap(lambda d: fr.fold_in(k, d))(np.arange(5))
    np.testing.assert_array_equal(got, np.stack([fr.fold_in(k, i) for i in range(5)]))
    keys = ff.vmap(fr.key)(np.arange(3))
    np.testing.assert_array_equal(keys, np.stack([fr.key(i) for i in range(3)]))
    nested = ff.vmap(ff.vmap(lambda k: fr.normal(k, (2,))))(fr.split(k, (3, 4)))
    assert nested.shape == (3, 4, 2)
    np.testing.assert_array_equal(nested[2, 1], fr.normal(fr.split(k, (3, 4))[2, 1], (2,)))


@pytest.mark.parametrize("name", sorted(DRAWS))
def test_jit_equals_eager(name):
    f = DRAWS[name]
    k = fr.key(5)
    np.testing.assert_array_equal(ff.jit(f)(k), f(k))
    np.testing.assert_array_equal(ff.jit(lambda k: fr.normal(k, (3,)))(k), fr.normal(k, (3,)))


def test_grad_through_uniform_bounds_and_a_normal_scale():
    k = fr.key(6)
    u = fr.uniform(k, (5,), np.float64)

    def f(lo, hi):
        return np.sum(fr.uniform(k, (5,), np.float64, lo, hi) ** 2)
    check_grads(f, (np.float64(-1.0), np.float64(2.5)), order=2)
    glo, ghi = ff.grad(lambda lo, hi: np.sum(fr.uniform(k, (5,), np.float64, lo, hi)),
                       argnums=(0, 1))(1.0, 3.0)
    assert glo == pytest.approx(np.sum(1 - u)) and ghi == pytest.approx(np.sum(u))
    z = fr.normal(k, (5,), np.float64)
    check_grads(lambda s, m: np.sum(np.tanh(m + s * fr.normal(k, (5,), np.float64))),
                (np.float64(0.7), np.float64(0.2)), order=2)
    assert ff.grad(lambda s: np.sum(s * fr.normal(k, (5,), np.float64)))(2.0) == \
        pytest.approx(np.sum(z))
    # array bounds, per element
    check_grads(lambda lo: np.sum(fr.uniform(k, (2, 3), np.float64, lo, 4.0) ** 2),
                (np.array([0.5, -1.0, 2.0]),), order=1)
    # truncated_normal: finite derivatives in its bounds, also at 0
    g = ff.grad(lambda a: np.sum(fr.truncated_normal(k, a, 2.0, (50,), np.float64)))(0.0)
    assert np.isfinite(g) and g > 0


def test_draws_on_the_strict_device_equal_the_host():
    strict.register()
    try:
        k = strict.to_strict(fr.key(42))
        on_device = {"categorical": lambda k: fr.categorical(k, strict.to_strict(LOGITS),
                                                             shape=(8, 2)),
                     "permutation": lambda k: fr.permutation(k, strict.to_strict(ROWS))}
        for name, f in DRAWS.items():
            got = on_device.get(name, f)(k)
            assert strict.is_strict(got), name
            np.testing.assert_array_equal(strict.from_strict(got), f(fr.key(42)), err_msg=name)
        keys = strict.to_strict(fr.split(fr.key(0), 3))
        got = ff.vmap(lambda k: fr.uniform(k, (4,)))(keys)
        assert strict.is_strict(got)
        np.testing.assert_array_equal(strict.from_strict(got),
                                      np.stack([fr.uniform(kk, (4,))
                                                for kk in fr.split(fr.key(0), 3)]))
        assert strict.is_strict(fr.uniform(k, (3,), minval=np.float32(1), maxval=2.0))
    finally:
        strict.unregister()


# ----------------------------------------------------------------------------- errors
def test_bad_keys_are_clear_errors():
    for bad, what in ((0, "int 0"), (np.zeros(2), "dtype float64"),
                      (np.zeros(3, np.uint32), r"shape \(3,\)"),
                      (np.zeros(2, np.int64), "dtype int64")):
        with pytest.raises(TypeError, match=rf"ff.random.normal: argument 'key' must be a random "
                                            rf"key.*{what}.*ff.random.key\(seed\)"):
            fr.normal(bad, (2,))
    with pytest.raises(TypeError, match=r"batch of keys of shape \(4, 2\).*ff.vmap"):
        fr.uniform(fr.split(fr.key(0), 4), (2,))
    with pytest.raises(TypeError, match="ff.random.split: argument 'key'"):
        fr.split(42)


def test_bad_arguments_are_clear_errors():
    k = fr.key(0)
    with pytest.raises(ValueError, match="ff.random.uniform: dtype must be a float"):
        fr.uniform(k, (2,), np.int32)
    with pytest.raises(ValueError, match="ff.random.bits: dtype must be an unsigned"):
        fr.bits(k, (2,), np.int32)
    with pytest.raises(TypeError, match="ff.random.randint: dtype must be an integer"):
        fr.randint(k, (2,), 0, 3, np.float32)
    with pytest.raises(ValueError, match=r"do not broadcast to the requested shape \(2,\)"):
        fr.uniform(k, (2,), minval=np.zeros(3))
    with pytest.raises(TypeError, match="seed must be an integer"):
        fr.key(1.5)
    with pytest.raises(TypeError, match="seed must be a scalar"):
        fr.key(np.arange(3))
    with pytest.raises(TypeError, match="fold_in: data must be a scalar"):
        fr.fold_in(k, np.arange(3))
    with pytest.raises(TypeError, match="bernoulli: p must be a float"):
        fr.bernoulli(k, np.array([1, 0]))
    with pytest.raises(TypeError, match="shape must be a tuple of ints"):
        fr.normal(k, (2.5,))
    with pytest.raises(ValueError, match="at most 2\\*\\*32 - 1 values"):
        fr.bits(k, (2 ** 16, 2 ** 16))
