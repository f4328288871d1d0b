"""Issue 16's optimisers, wrappers and schedules against optax's trajectories and their rules.

Every rule runs 20 steps on one fixed problem: a least-squares fit ``X w + b ~ Y``
on a batch of two rows that cycles through three (so each step's gradient
differs) plus a weighted quadratic in a 2x3x4 array ``t``: three leaves, a
vector, a matrix and a 3-D array (Adafactor factors the last two). Gradients
are written out in NumPy below, so both sides see the same inputs.

Two checks per rule:

- against literal numbers recorded once from optax 0.2.8 in float64
  (``tests/optim/optax_references.py``; optax is not a test dependency), and
- where short, against the update rule written down in NumPy here.

The references were made by running the same loop with optax::

    p = {k: jnp.asarray(v) for k, v in P0.items()}; s = opt.init(p)
    for i in range(20):
        g = {k: jnp.asarray(v) for k, v in grad(np-params, i).items()}
        u, s = opt.update(g, s, p, **({} if value is None else {"value": value(i)}))
        p = optax.apply_updates(p, u)

with the optax counterparts named in each test.
"""
import functools
import math

import numpy as np
import pytest

import funcflux as ff
from funcflux import optim

from . import optax_references as ref

RTOL = 1e-10

X = np.sin(1.3 * np.arange(18.0)).reshape(6, 3)
Y = np.cos(0.7 * np.arange(24.0)).reshape(6, 4)
T = np.sin(0.9 * np.arange(24.0) + 0.5).reshape(2, 3, 4)
D = 1.0 + 0.5 * np.cos(np.arange(24.0)).reshape(2, 3, 4)
P0 = {"b": np.zeros(4), "t": np.cos(1.1 * np.arange(24.0)).reshape(2, 3, 4),
      "w": np.sin(2.1 * np.arange(12.0) + 1.0).reshape(3, 4)}


def grad(p, step):
    """The gradient of ``mean((X w + b - Y)²) / 2`` over batch ``step % 3`` (two rows of
    four outputs) plus ``sum(D (t - T)²) / 2``."""
    rows = slice(2 * (step % 3), 2 * (step % 3) + 2)
    r = (X[rows] @ p["w"] + p["b"] - Y[rows]) / 8.0
    return {"b": r.sum(0), "t": D * (p["t"] - T), "w": X[rows].T @ r}


def flat(p):
    return np.concatenate([np.asarray(p[k]).ravel() for k in sorted(p)])


def run(opt, steps=20, nan_at=(), value=None):
    """The references' loop, with funcflux's optimiser."""
    p = dict(P0)
    s = opt.init(p)
    for i in range(steps):
        g = grad(p, i)
        if i in nan_at:
            g["b"] = g["b"].copy()
            g["b"][1] = np.nan
        kw = {} if value is None else {"value": value(i)}
        u, s = opt.update(g, s, p, **kw)
        p = optim.apply_updates(p, u)
    return p, s


def run_numpy(step_fn, state, steps=20):
    """The loop with a rule written in NumPy: ``step_fn(p, g, state, i) -> (p, state)``."""
    p = {k: v.copy() for k, v in P0.items()}
    for i in range(steps):
        p, state = step_fn(p, grad(p, i), state, i)
    return p


def close(got, want, rtol=RTOL):
    np.testing.assert_allclose(flat(got) if isinstance(got, dict) else got, want, rtol=rtol,
                               atol=rtol * 1e-2)


# ----------------------------------------------------------------------------- AdaBelief
def adabelief_numpy(lr, b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16, nesterov=False):
    def step(p, g, s, i):
        t = i + 1
        out = {}
        for k in p:
            m = (1 - b1) * g[k] + b1 * s["m"][k]
            v = (1 - b2) * (g[k] - m) ** 2 + b2 * s["v"][k] + eps_root
            m_hat = (b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g[k] / (1 - b1 ** t)
                     if nesterov else m / (1 - b1 ** t))
            out[k] = p[k] - lr * m_hat / (np.sqrt(v / (1 - b2 ** t)) + eps)
            s["m"][k], s["v"][k] = m, v
        return out, s
    return step, {"m": {k: 0 * v for k, v in P0.items()}, "v": {k: 0 * v for k, v in P0.items()}}


def test_adabelief_is_optax_and_its_rule():
    close(run(optim.adabelief(0.05))[0], ref.ADABELIEF)
    close(run_numpy(*adabelief_numpy(0.05)), ref.ADABELIEF)
    close(run(optim.adabelief(0.05, b1=0.8, nesterov=True))[0], ref.ADABELIEF_NESTEROV)
    close(run_numpy(*adabelief_numpy(0.05, b1=0.8, nesterov=True)), ref.ADABELIEF_NESTEROV)


def test_adabelief_state_and_dtype():
    opt = optim.adabelief(1e-3)
    p = {"w": np.ones(3, np.float32)}
    u, s = opt.update({"w": np.ones(3, np.float32)}, opt.init(p), p)
    assert u["w"].dtype == np.float32 and s[0].mu["w"].dtype == np.float32
    assert isinstance(s[0], optim.ScaleByBeliefState) and s[0].count == 1
    with pytest.raises(ValueError, match="b1"):
        optim.adabelief(1e-3, b1=1.0)


# ----------------------------------------------------------------------------- Adafactor
def adafactor_numpy(lr, min_dim=3, decay=0.8, eps=1e-30, clip=1.0):
    """optax's adafactor, written out: factored RMS, block-RMS clipping, relative step."""
    def dims(shape):
        if len(shape) < 2:
            return None
        order = np.argsort(shape)
        return None if shape[order[-2]] < min_dim else (int(order[-2]), int(order[-1]))

    def step(p, g, s, i):
        rate = 1.0 - (i + 1.0) ** -decay
        out = {}
        for k in p:
            g2 = g[k] ** 2 + eps
            dd = dims(p[k].shape)
            if dd is None:
                s[k] = rate * s[k] + (1 - rate) * g2
                u = g[k] / np.sqrt(s[k])
            else:
                d1, d0 = dd  # second largest, largest axis
                row, col = s[k]
                row = rate * row + (1 - rate) * g2.mean(axis=d0)
                col = rate * col + (1 - rate) * g2.mean(axis=d1)
                s[k] = (row, col)
                r1 = d1 - 1 if d1 > d0 else d1
                est = (np.expand_dims(row / row.mean(axis=r1, keepdims=True), d0)
                       * np.expand_dims(col, d1))     # v[i, j] ~ row[i] col[j] / mean(row)
                u = g[k] / np.sqrt(est)
            u = u / max(1.0, np.sqrt(np.mean(u ** 2)) / clip)
            u = u * lr * max(np.sqrt(np.mean(p[k] ** 2)), 1e-3)
            out[k] = p[k] - u
        return out, s

    state = {}
    for k, v in P0.items():
        dd = dims(v.shape)
        state[k] = (np.zeros_like(v) if dd is None else
                    (np.zeros(np.delete(v.shape, dd[1])), np.zeros(np.delete(v.shape, dd[0]))))
    return step, state


def test_adafactor_is_optax_and_its_rule():
    ours = optim.adafactor(0.05, min_dim_size_to_factor=3)
    close(run(ours)[0], ref.ADAFACTOR)
    close(run_numpy(*adafactor_numpy(0.05)), ref.ADAFACTOR)
    # optax's own adafactor computes the decay 1 - t**-0.8 in float32: agreement to ~1e-7
    close(run(ours)[0], ref.ADAFACTOR_OPTAX_F32_RATE, rtol=1e-6)
    # momentum (an ema of the updates) and weight decay, each as in optax's chain
    close(run(optim.adafactor(0.05, min_dim_size_to_factor=3, momentum=0.9,
                              dtype_momentum=np.float64, weight_decay_rate=1e-2))[0],
          ref.ADAFACTOR_MOMENTUM)


def test_adafactor_factors_only_long_axes():
    # the default min_dim_size_to_factor=128 leaves these small arrays unfactored
    opt = optim.adafactor(0.05)
    close(run(opt)[0], ref.ADAFACTOR_DEFAULT_DIMS)
    s = opt.init(P0)[0]
    assert s.v["w"].shape == (3, 4) and s.v_row["w"].shape == (1,)
    s = optim.adafactor(0.05, min_dim_size_to_factor=3).init(P0)[0]
    # w (3, 4): rows over the last axis, cols over the first; t (2, 3, 4) over axes 1, 2
    assert s.v_row["w"].shape == (3,) and s.v_col["w"].shape == (4,) and s.v["w"].shape == (1,)
    assert s.v_row["t"].shape == (2, 3) and s.v_col["t"].shape == (2, 4)
    assert s.v["b"].shape == (4,)


def test_adafactor_needs_params_and_keeps_float32():
    opt = optim.adafactor(0.01, min_dim_size_to_factor=2)
    p = {"w": np.ones((2, 3), np.float32)}
    with pytest.raises(ValueError, match="needs the parameters"):
        opt.update(p, opt.init(p))
    u, s = opt.update(p, opt.init(p), p)
    assert u["w"].dtype == np.float32 and s[0].v_row["w"].dtype == np.float32


def test_adafactor_trains_through_setup():
    model = {"w": np.ones((4, 5)), "n": 3}
    state = optim.setup(optim.adafactor(0.1, min_dim_size_to_factor=2), model)
    for _ in range(3):
        state, model = optim.step(state, model, ff.grad(lambda m: np.sum(m["w"] ** 2))(model))
    assert np.all(model["w"] < 1.0) and model["n"] == 3


def test_ema_and_block_rms_blocks():
    opt = optim.ema(0.5)  # debiased: constant updates come back unchanged
    s = opt.init(np.zeros(2))
    for _ in range(3):
        u, s = opt.update(np.array([2.0, -1.0]), s)
    np.testing.assert_allclose(u, [2.0, -1.0])
    u = optim.clip_by_block_rms(0.5).update(np.array([3.0, 4.0]), optim.EmptyState())[0]
    np.testing.assert_allclose(np.sqrt(np.mean(u ** 2)), 0.5)
    u = optim.scale_by_param_block_rms(0.25).update(np.ones(2), optim.EmptyState(),
                                                     np.zeros(2))[0]
    np.testing.assert_allclose(u, [0.25, 0.25])


# ----------------------------------------------------------------------------- MultiSteps
def adam_numpy_step(lr, b1=0.9, b2=0.999, eps=1e-8):
    def step(p, g, s):
        s["n"] += 1
        t = s["n"]
        out = {}
        for k in p:
            s["m"][k] = (1 - b1) * g[k] + b1 * s["m"][k]
            s["v"][k] = (1 - b2) * g[k] ** 2 + b2 * s["v"][k]
            out[k] = p[k] - lr * (s["m"][k] / (1 - b1 ** t)) / (
                np.sqrt(s["v"][k] / (1 - b2 ** t)) + eps)
        return out
    return step, {"n": 0, "m": {k: 0 * v for k, v in P0.items()},
                  "v": {k: 0 * v for k, v in P0.items()}}


def test_multisteps_is_optax_and_its_rule():
    opt = optim.MultiSteps(optim.adam(0.1), every_k_schedule=3)
    close(run(opt)[0], ref.MULTISTEPS)
    close(run(opt.gradient_transformation())[0], ref.MULTISTEPS)

    adam, s = adam_numpy_step(0.1)

    def step(p, g, acc, i):   # the mean of every 3 gradients, then one Adam step
        acc = [g] if i % 3 == 0 else acc + [g]
        if len(acc) == 3:
            return adam(p, {k: sum(a[k] for a in acc) / 3 for k in p}, s), []
        return p, acc
    close(run_numpy(step, []), ref.MULTISTEPS)


def test_multisteps_sum_and_schedule():
    opt = optim.MultiSteps(optim.sgd(0.1, momentum=0.9),
                           every_k_schedule=lambda step: 2 if step < 2 else 3,
                           use_grad_mean=False)
    p, s = run(opt)
    close(p, ref.MULTISTEPS_SUM_SCHEDULE)
    assert [s.mini_step, s.gradient_step] == ref.MULTISTEPS_SUM_SCHEDULE_COUNTS


def test_multisteps_state_zeros_and_skips():
    opt = optim.MultiSteps(optim.sgd(1.0), 2, should_skip_update_fn=optim.skip_not_finite)
    p = {"w": np.zeros(2), "n": 1}
    s = opt.init(p)
    assert s.skip_state == {"should_skip": False, "num_not_finite": 0}
    u, s = opt.update({"w": np.array([1.0, 1.0]), "n": None}, s, p)
    assert u["n"] is None and np.array_equal(u["w"], [0.0, 0.0]) and not opt.has_updated(s)
    u, s = opt.update({"w": np.array([np.inf, 1.0]), "n": None}, s, p)  # skipped
    assert s.mini_step == 1 and s.skip_state["num_not_finite"] == 1
    u, s = opt.update({"w": np.array([3.0, 3.0]), "n": None}, s, p)
    np.testing.assert_array_equal(u["w"], [-2.0, -2.0])
    assert opt.has_updated(s) and s.gradient_step == 1
    big = functools.partial(optim.skip_large_updates, max_squared_norm=1.0)
    opt = optim.MultiSteps(optim.sgd(1.0), 1, should_skip_update_fn=big)
    u, s = opt.update(np.array([2.0]), opt.init(np.zeros(1)))
    assert u[0] == 0.0 and s.skip_state["norm_squared"] == 4.0


def test_multisteps_accumulator_dtype_and_errors():
    opt = optim.MultiSteps(optim.sgd(1.0), 2)
    s = opt.init(np.zeros(2, np.float32))
    assert s.acc_grads.dtype == np.float32
    s = optim.MultiSteps(optim.sgd(1.0), 2, accumulator_dtype=np.float32).init(np.zeros(2))
    assert s.acc_grads.dtype == np.float32
    with pytest.raises(ValueError, match="every_k_schedule"):
        optim.MultiSteps(optim.sgd(1.0), 0)
    with pytest.raises(TypeError, match="not an optimiser"):
        optim.MultiSteps(optim.sgd, 2)


def test_multisteps_through_train_accumulates():
    # k = 2 mini-batches of 4 per step equals one step of sgd on the batch of 8
    Xs = np.linspace(-1, 1, 8)[:, None]
    Ys = 2 * Xs
    loss = lambda m, x, y: np.mean((x * m["a"] - y) ** 2)  # noqa: E731
    big, _, _ = ff.train(loss, {"a": np.zeros(1)}, [(Xs, Ys)], optim.sgd(0.3), epochs=3,
                         progress=False)
    small, _, _ = ff.train(loss, {"a": np.zeros(1)}, [(Xs[:4], Ys[:4]), (Xs[4:], Ys[4:])],
                           optim.MultiSteps(optim.sgd(0.3), 2), epochs=3, progress=False)
    np.testing.assert_allclose(small["a"], big["a"], rtol=1e-12)


# ----------------------------------------------------------------------------- lookahead
def run_lookahead(opt, steps=20):
    p = optim.LookaheadParams.init_synced(dict(P0))
    s = opt.init(p)
    for i in range(steps):
        u, s = opt.update(grad(p.fast, i), s, p)
        p = optim.apply_updates(p, u)
    return p


def test_lookahead_is_optax_and_its_rule():
    p = run_lookahead(optim.lookahead(optim.adam(0.1), sync_period=4, slow_step_size=0.5))
    close(p.fast, ref.LOOKAHEAD_FAST)
    close(p.slow, ref.LOOKAHEAD_SLOW)
    p = run_lookahead(optim.lookahead(optim.sgd(0.1, momentum=0.9), sync_period=3,
                                      slow_step_size=0.3, reset_state=True), 19)
    close(p.fast, ref.LOOKAHEAD_RESET_FAST)
    close(p.slow, ref.LOOKAHEAD_RESET_SLOW)

    # the rule: momentum SGD on fast; every 3rd step slow += 0.3 (fast - slow), fast = slow,
    # momentum reset to zero
    fast, slow = dict(P0), dict(P0)
    mom = {k: 0 * v for k, v in P0.items()}
    for i in range(19):
        g = grad(fast, i)
        mom = {k: g[k] + 0.9 * mom[k] for k in g}
        fast = {k: fast[k] - 0.1 * mom[k] for k in g}
        if i % 3 == 2:
            slow = {k: slow[k] + 0.3 * (fast[k] - slow[k]) for k in g}
            fast = dict(slow)
            mom = {k: 0 * v for k, v in mom.items()}
    close(fast, ref.LOOKAHEAD_RESET_FAST)
    close(slow, ref.LOOKAHEAD_RESET_SLOW)


def test_lookahead_errors():
    opt = optim.lookahead(optim.sgd(0.1), 2, 0.5)
    s = opt.init(np.zeros(2))   # plain params are the fast ones
    with pytest.raises(TypeError, match="LookaheadParams"):
        opt.update(np.ones(2), s, np.zeros(2))
    with pytest.raises(ValueError, match="sync_period"):
        optim.lookahead(optim.sgd(0.1), 0, 0.5)


# ----------------------------------------------------------------------------- apply_if_finite
def test_apply_if_finite_is_optax_and_its_rule():
    opt = optim.apply_if_finite(optim.adam(0.1), max_consecutive_errors=2)
    p, s = run(opt, nan_at=(3, 7, 8))
    close(p, ref.APPLY_IF_FINITE)
    assert [s.notfinite_count, s.last_finite, s.total_notfinite] == ref.APPLY_IF_FINITE_COUNTS

    adam, st = adam_numpy_step(0.1)   # the rule: Adam on the other steps only

    def step(p, g, _, i):
        return (p if i in (3, 7, 8) else adam(p, g, st)), None
    close(run_numpy(step, None), ref.APPLY_IF_FINITE)


def test_apply_if_finite_gives_up():
    opt = optim.apply_if_finite(optim.sgd(1.0), max_consecutive_errors=1)
    s = opt.init(np.zeros(1))
    u, s = opt.update(np.array([np.nan]), s)
    assert u[0] == 0.0 and s.notfinite_count == 1
    u, s = opt.update(np.array([np.nan]), s)   # a second in a row: applied
    assert np.isnan(u[0]) and s.total_notfinite == 2 and s.last_finite is False
    u, s = opt.update(np.array([1.0]), s)
    assert u[0] == -1.0 and s.notfinite_count == 0 and s.total_notfinite == 2


# ----------------------------------------------------------------------------- reduce_on_plateau
VALUES = [3.0, 2.0, 2.1, 1.9, 1.95, 1.97, 1.96, 1.99, 1.5, 1.6, 1.7, 1.8, 1.9, 1.2, 1.3, 1.25,
          1.4, 1.5, 1.6, 1.7]


def test_reduce_on_plateau_is_optax():
    opt = optim.chain(optim.sgd(0.1), optim.reduce_on_plateau(
        factor=0.5, patience=2, rtol=0.01, atol=0.0, cooldown=1, accumulation_size=2))
    p, s = run(opt, value=lambda i: VALUES[i])
    close(p, ref.PLATEAU)
    st = s[1]
    assert [st.scale, st.best_value, st.plateau_count, st.cooldown_count, st.count,
            st.avg_value] == pytest.approx(ref.PLATEAU_STATE, rel=1e-15)

    opt = optim.reduce_on_plateau(factor=0.5, patience=1, rtol=0.0, atol=0.05, min_scale=0.2)
    s = opt.init(np.zeros(1))
    scales = []
    for v in VALUES:
        _, s = opt.update(np.ones(1), s, value=v)
        scales.append(s.scale)
    assert scales == pytest.approx(ref.PLATEAU_SCALES, rel=1e-15)


def test_reduce_on_plateau_value_is_needed_and_reaches_through_step():
    opt = optim.chain(optim.sgd(1.0), optim.reduce_on_plateau(patience=1))
    with pytest.raises(TypeError, match="value=loss"):
        opt.update(np.ones(1), opt.init(np.zeros(1)))
    state = optim.setup(opt, {"w": np.zeros(1)})
    model = {"w": np.zeros(1)}
    for v in (1.0, 2.0, 3.0):
        state, model = optim.step(state, model, {"w": np.ones(1)}, value=v)
    np.testing.assert_allclose(model["w"], [-1.0 - 0.1 - 0.01])  # scale 1, 0.1, 0.01
    with pytest.raises(ValueError, match="factor"):
        optim.reduce_on_plateau(factor=1.0)
    with pytest.raises(ValueError, match="rtol and atol"):
        optim.reduce_on_plateau(rtol=0.0, atol=0.0)


def test_reduce_on_plateau_state_saves(tmp_path):
    opt = optim.chain(optim.adam(0.1), optim.reduce_on_plateau())
    p = {"w": np.ones(2)}
    s = opt.init(p)
    _, s = opt.update(p, s, p, value=1.5)
    ff.save(tmp_path / "c.npz", p, opt_state=s)
    _, back = ff.load(tmp_path / "c.npz", like=p, opt_state_like=opt.init(p))
    assert back[1] == s[1]


# ----------------------------------------------------------------------------- schedules
def warmup_cosine(n, init_value, peak_value, warmup_steps, decay_steps, end_value=0.0,
                  exponent=1.0):
    if n < warmup_steps:
        return init_value + (peak_value - init_value) * n / warmup_steps
    k = min(n - warmup_steps, decay_steps - warmup_steps)
    c = (0.5 * (1 + math.cos(math.pi * k / (decay_steps - warmup_steps)))) ** exponent
    return end_value + (peak_value - end_value) * c


def test_sgdr_is_optax_and_its_rule():
    cycles = [dict(init_value=0.1, peak_value=1.0, warmup_steps=3, decay_steps=10,
                   end_value=0.05),
              dict(init_value=0.0, peak_value=0.5, warmup_steps=0, decay_steps=8, exponent=2.0),
              dict(init_value=0.2, peak_value=0.4, warmup_steps=2, decay_steps=5)]
    s = optim.sgdr(cycles)
    assert optim.sgdr_schedule is optim.sgdr
    got = [s(n) for n in range(30)]
    np.testing.assert_allclose(got, ref.SGDR, rtol=1e-12)
    starts = [0, 10, 18]
    want = []
    for n in range(30):
        i = max(j for j in range(3) if n >= starts[j])
        want.append(warmup_cosine(n - starts[i], **cycles[i]))
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_cosine_onecycle_is_optax_and_its_rule():
    s = optim.cosine_onecycle(20, 0.8, pct_start=0.25, div_factor=10.0, final_div_factor=100.0)
    got = [s(n) for n in range(25)]
    np.testing.assert_allclose(got, ref.ONECYCLE, rtol=1e-12)
    lo, peak, end = 0.08, 0.8, 0.0008

    def cos(a, b, x):  # from a to b as x goes from 0 to 1
        return b + (a - b) * (1 + math.cos(math.pi * x)) / 2
    want = [cos(lo, peak, n / 5) if n < 5 else cos(peak, end, (n - 5) / 15) if n < 20 else end
            for n in range(25)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    s = optim.cosine_onecycle_schedule(7, 1.0)
    np.testing.assert_allclose([s(n) for n in range(10)], ref.ONECYCLE_DEFAULT, rtol=1e-12)
    with pytest.raises(ValueError, match="transition_steps"):
        optim.cosine_onecycle(0, 1.0)


def test_schedules_drive_an_optimiser():
    opt = optim.sgd(optim.cosine_onecycle(10, 1.0))
    s = opt.init(np.zeros(1))
    u, s = opt.update(np.ones(1), s)
    np.testing.assert_allclose(u, [-0.04])


# ----------------------------------------------------------------------------- under ff.jit
def _jit_problem():
    Xs = np.linspace(-1, 1, 16)[:, None]
    loss = lambda m, x, y: np.mean((x @ m["w"] - y) ** 2)  # noqa: E731
    batches = [(Xs[:8], 2 * Xs[:8]), (Xs[8:], 2 * Xs[8:])]
    return loss, {"w": np.zeros((1, 3))}, batches


@pytest.mark.parametrize("make", [
    lambda: optim.adabelief(0.1),
    lambda: optim.adafactor(0.1, min_dim_size_to_factor=1, momentum=0.5),
    lambda: optim.chain(optim.ema(0.9), optim.clip_by_block_rms(0.5), optim.sgd(0.1)),
], ids=["adabelief", "adafactor", "ema-block-rms"])
def test_rules_stage_under_train_jit(make):
    loss, m0, batches = _jit_problem()
    eager = ff.train(loss, m0, batches, make(), epochs=3, progress=False)[0]
    staged = ff.train(loss, m0, batches, make(), epochs=3, progress=False, jit=True)[0]
    np.testing.assert_allclose(staged["w"], eager["w"], rtol=1e-12)


@pytest.mark.parametrize("make", [
    lambda: optim.MultiSteps(optim.adam(0.1), 2),
    lambda: optim.MultiSteps(optim.sgd(0.1, momentum=0.9), 3, use_grad_mean=False),
    lambda: optim.apply_if_finite(optim.adam(0.1), 2),
], ids=["MultiSteps", "MultiSteps-sum", "apply_if_finite"])
def test_wrappers_decide_with_a_staged_cond_under_jit(make):
    """MultiSteps and apply_if_finite decide with ff.lax.cond: under jit one staged cond,
    and the trajectory (parameters and counters) equals the eager one."""
    loss, m0, batches = _jit_problem()
    eager = ff.train(loss, m0, batches, make(), epochs=5, progress=False)
    staged = ff.train(loss, m0, batches, make(), epochs=5, progress=False, jit=True)
    np.testing.assert_allclose(staged[0]["w"], eager[0]["w"], rtol=1e-12)
    for a, b in zip(ff.tree.leaves(staged[1]), ff.tree.leaves(eager[1])):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_apply_if_finite_under_jit_skips_a_non_finite_gradient():
    opt = optim.apply_if_finite(optim.sgd(1.0), 1)
    step = ff.jit(lambda g, s: opt.update(g, s))
    s = opt.init(np.zeros(2))
    u, s = step(np.array([np.inf, 1.0]), s)
    np.testing.assert_array_equal(u, [0.0, 0.0])
    assert (int(s.notfinite_count), int(s.total_notfinite)) == (1, 1)
    u, s = step(np.array([np.nan, 1.0]), s)  # a second in a row: more than 1, applied anyway
    assert np.isnan(u[0]) and (int(s.notfinite_count), int(s.total_notfinite)) == (2, 2)
    u, s = step(np.array([2.0, 1.0]), s)
    np.testing.assert_array_equal(u, [-2.0, -1.0])
    assert (int(s.notfinite_count), int(s.total_notfinite)) == (0, 2)
