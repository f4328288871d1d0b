"""Each optimiser against its update formula (optax's), written out in NumPy, over several steps.

The references below are the formulas of the optax documentation and source,
one line per equation, in float64; the optimisers run on the same gradients
and must give the same parameter trajectories.
"""
import math

import numpy as np
import pytest

from funcflux import optim

RNG = np.random.default_rng(0)
P0 = RNG.standard_normal(5)
GRADS = [RNG.standard_normal(5) for _ in range(8)]


def run(opt, p=P0, grads=GRADS, steps=3):
    """Parameter trajectory of ``opt`` on a fixed gradient sequence."""
    state = opt.init(p)
    out = []
    for g in grads[:steps]:
        u, state = opt.update(g, state, p)
        p = optim.apply_updates(p, u)
        out.append(p)
    return out


def run_ref(step, state, p=P0, grads=GRADS, steps=3):
    out = []
    for t, g in enumerate(grads[:steps], 1):
        p, state = step(p, g, state, t)
        out.append(p)
    return out


def close(a, b, rtol=1e-10, atol=1e-12):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------- known values
def test_sgd_known_values():
    g = [np.ones(1)] * 3
    assert [float(u[0]) for u in updates_of(optim.sgd(0.1), g)] == pytest.approx([-0.1] * 3)
    assert [float(u[0]) for u in updates_of(optim.sgd(0.1, momentum=0.9), g)] == \
        pytest.approx([-0.1, -0.19, -0.271])
    assert [float(u[0]) for u in updates_of(optim.sgd(0.1, momentum=0.9, nesterov=True), g)] == \
        pytest.approx([-0.19, -0.271, -0.3439])


def updates_of(opt, grads, p=np.zeros(1)):
    state = opt.init(p)
    out = []
    for g in grads:
        u, state = opt.update(g, state, p)
        out.append(u)
    return out


def test_adam_first_step_is_lr_times_sign():
    (u,) = updates_of(optim.adam(0.1), [np.array([0.5, -2.0, 1e-3])], p=np.zeros(3))
    # m̂ = g, v̂ = g²: the step is -lr * g / (|g| + eps)
    np.testing.assert_allclose(u, -0.1 * np.array([0.5, -2.0, 1e-3]) /
                               (np.abs([0.5, -2.0, 1e-3]) + 1e-8), rtol=1e-12)


def test_adam_two_steps_by_hand():
    u1, u2 = updates_of(optim.adam(1.0, b1=0.5, b2=0.75, eps=0.0),
                        [np.array([2.0]), np.array([1.0])])
    # m = [1, 1.0], v = [1, 0.75 + 0.25] ; m̂2 = 1.0 / 0.75, v̂2 = 1.0 / (1 - 0.5625)
    assert float(u1[0]) == pytest.approx(-1.0)
    assert float(u2[0]) == pytest.approx(-(1.0 / 0.75) / np.sqrt(1.0 / 0.4375))


def test_adagrad_known_values():
    u1, u2 = updates_of(optim.adagrad(1.0), [np.array([1.0]), np.array([2.0])])
    assert float(u1[0]) == pytest.approx(-1.0 / np.sqrt(1.1 + 1e-7))
    assert float(u2[0]) == pytest.approx(-2.0 / np.sqrt(5.1 + 1e-7))


def test_rmsprop_known_values():
    u1, u2 = updates_of(optim.rmsprop(0.01), [np.array([1.0]), np.array([1.0])])
    assert float(u1[0]) == pytest.approx(-0.01 / np.sqrt(0.1 + 1e-8))
    assert float(u2[0]) == pytest.approx(-0.01 / np.sqrt(0.19 + 1e-8))


def test_lion_known_values():
    # sign step, weight decay 0: ±lr whatever the gradient's size
    u1, u2 = updates_of(optim.lion(0.1, weight_decay=0.0), [np.array([5.0, -1e-3]),
                                                          np.array([-1.0, -1.0])],
                         p=np.zeros(2))
    np.testing.assert_allclose(u1, [-0.1, 0.1])
    # c = 0.1 * g + 0.9 * m with m = 0.01 * [5, -1e-3]: [-0.055, -0.1000009]
    np.testing.assert_allclose(u2, [0.1, 0.1])


# ----------------------------------------------------------------------------- trajectories
def adam_ref(lr, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, nesterov=False, wd=0.0):
    def step(p, g, s, t):
        m, v = s
        m = (1 - b1) * g + b1 * m
        v = (1 - b2) * g ** 2 + b2 * v
        if nesterov:
            mh = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1 ** t)
        else:
            mh = m / (1 - b1 ** t)
        vh = v / (1 - b2 ** t)
        u = mh / (np.sqrt(vh + eps_root) + eps) + wd * p
        return p - lr * u, (m, v)
    return step, (0.0, 0.0)


@pytest.mark.parametrize("kw", [{}, {"b1": 0.5, "b2": 0.9, "eps": 1e-3}, {"eps_root": 1e-4}])
def test_adam(kw):
    step, s0 = adam_ref(0.01, **kw)
    close(run(optim.adam(0.01, **kw)), run_ref(step, s0))


def test_adam_nesterov_and_nadam():
    step, s0 = adam_ref(0.01, nesterov=True)
    ref = run_ref(step, s0)
    close(run(optim.nadam(0.01)), ref)
    close(run(optim.adam(0.01, nesterov=True)), ref)


def test_adamw():
    step, s0 = adam_ref(0.01, wd=0.1)
    close(run(optim.adamw(0.01, weight_decay=0.1)), run_ref(step, s0))


def test_adamw_default_decay_and_mask():
    step, s0 = adam_ref(0.01, wd=1e-4)
    close(run(optim.adamw(0.01)), run_ref(step, s0))
    # masked out: plain Adam
    step, s0 = adam_ref(0.01)
    close(run(optim.adamw(0.01, weight_decay=0.5, mask=lambda p: False)), run_ref(step, s0))


@pytest.mark.parametrize("momentum,nesterov", [(None, False), (0.9, False), (0.5, True)])
def test_sgd(momentum, nesterov):
    def step(p, g, t_, t):
        if momentum is None:
            return p - 0.1 * g, t_
        tr = g + momentum * t_
        u = g + momentum * tr if nesterov else tr
        return p - 0.1 * u, tr
    close(run(optim.sgd(0.1, momentum, nesterov)), run_ref(step, 0.0))


@pytest.mark.parametrize("kw", [{}, {"eps_in_sqrt": False}, {"initial_scale": 1.0}])
def test_rmsprop(kw):
    decay, eps, init = 0.9, 1e-8, kw.get("initial_scale", 0.0)

    def step(p, g, nu, t):
        nu = (1 - decay) * g ** 2 + decay * nu
        d = np.sqrt(nu + eps) if kw.get("eps_in_sqrt", True) else np.sqrt(nu) + eps
        return p - 0.01 * g / d, nu
    close(run(optim.rmsprop(0.01, **kw)), run_ref(step, init))


def test_rmsprop_centered_with_momentum():
    decay, eps = 0.9, 1e-8

    def step(p, g, s, t):
        mu, nu, tr = s
        mu = (1 - decay) * g + decay * mu
        nu = (1 - decay) * g ** 2 + decay * nu
        u = -0.01 * g / np.sqrt(nu - mu ** 2 + eps)
        tr = u + 0.5 * tr  # optax: the trace comes after the learning rate
        return p + tr, (mu, nu, tr)
    close(run(optim.rmsprop(0.01, centered=True, momentum=0.5)), run_ref(step, (0.0, 0.0, 0.0)))


def test_adagrad():
    def step(p, g, s, t):
        s = s + g ** 2
        return p - 0.1 * g / np.sqrt(s + 1e-7), s
    close(run(optim.adagrad(0.1)), run_ref(step, 0.1))


def test_adagrad_zero_accumulator_and_eps_gives_zero_not_nan():
    opt = optim.adagrad(0.1, initial_accumulator_value=0.0, eps=0.0)
    u, _ = opt.update(np.array([0.0, 2.0]), opt.init(np.zeros(2)))
    np.testing.assert_allclose(u, [0.0, -0.1])


@pytest.mark.parametrize("lr,wd", [(None, 0.0), (0.5, 0.1)])
def test_adadelta(lr, wd):
    rho, eps = 0.9, 1e-6

    def step(p, g, s, t):
        eg, ex = s
        g = g + wd * p
        eg = (1 - rho) * g ** 2 + rho * eg
        u = np.sqrt(ex + eps) / np.sqrt(eg + eps) * g
        ex = (1 - rho) * u ** 2 + rho * ex
        return p - (1.0 if lr is None else lr) * u, (eg, ex)
    close(run(optim.adadelta(lr, weight_decay=wd)), run_ref(step, (0.0, 0.0)))


@pytest.mark.parametrize("wd", [1e-3, 0.0])
def test_lion(wd):
    b1, b2 = 0.9, 0.99

    def step(p, g, m, t):
        u = np.sign((1 - b1) * g + b1 * m) + wd * p
        m = (1 - b2) * g + b2 * m
        return p - 0.01 * u, m
    close(run(optim.lion(0.01, weight_decay=wd)), run_ref(step, 0.0))


def test_lion_defaults_are_optax():
    state = optim.inject_hyperparams(optim.lion)(0.01).init(np.zeros(1))
    assert state.hyperparams == {"learning_rate": 0.01, "b1": 0.9, "b2": 0.99,
                                 "weight_decay": 1e-3}


@pytest.mark.parametrize("b2,steps", [(0.999, 4), (0.9, 8)])
def test_radam(b2, steps):
    b1, eps, thr = 0.9, 1e-8, 5.0
    rho_inf = 2 / (1 - b2) - 1

    def step(p, g, s, t):
        m, v = s
        m = (1 - b1) * g + b1 * m
        v = (1 - b2) * g ** 2 + b2 * v
        mh, vh = m / (1 - b1 ** t), v / (1 - b2 ** t)
        rho = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
        if rho >= thr:
            r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            u = r * mh / (np.sqrt(vh) + eps)
        else:
            u = mh
        return p - 0.01 * u, (m, v)
    close(run(optim.radam(0.01, b2=b2), steps=steps), run_ref(step, (0.0, 0.0), steps=steps))


def test_radam_rectifies_from_step_6_with_b2_09():
    # rho_6 = 19 - 12 * 0.9**6 / (1 - 0.9**6) = 5.39 >= 5; rho_5 = 4.58 < 5
    opt = optim.radam(1.0, b2=0.9)
    us = updates_of(opt, [np.ones(1)] * 6)
    assert [float(u[0]) for u in us[:5]] == pytest.approx([-1.0] * 5)  # m̂ of a constant 1
    assert float(us[5][0]) != pytest.approx(-1.0)


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_lamb(wd):
    b1, b2, eps = 0.9, 0.999, 1e-6
    p0 = {"a": P0, "b": 3 * P0[:2]}
    grads = [{"a": g, "b": g[:2] * 10} for g in GRADS]

    def step(p, g, s, t):
        new_p, new_s = {}, {}
        for k in p:
            m, v = s[k]
            m = (1 - b1) * g[k] + b1 * m
            v = (1 - b2) * g[k] ** 2 + b2 * v
            a = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps) + wd * p[k]
            trust = np.linalg.norm(p[k]) / np.linalg.norm(a)  # per array
            new_p[k] = p[k] - 0.01 * trust * a
            new_s[k] = (m, v)
        return new_p, new_s
    out = run(optim.lamb(0.01, weight_decay=wd), p=p0, grads=grads)
    ref = run_ref(step, {"a": (0.0, 0.0), "b": (0.0, 0.0)}, p=p0, grads=grads)
    for x, y in zip(out, ref):
        close([x["a"], x["b"]], [y["a"], y["b"]])


def test_trust_ratio_is_one_for_zero_params():
    opt = optim.scale_by_trust_ratio()
    u, _ = opt.update(np.ones(2), opt.init(np.zeros(2)), np.zeros(2))
    np.testing.assert_array_equal(u, np.ones(2))
    with pytest.raises(ValueError, match="needs the parameters"):
        opt.update(np.ones(2), opt.init(np.zeros(2)))


# ----------------------------------------------------------------------------- blocks
def test_scale_by_adam_state_shape():
    opt = optim.scale_by_adam()
    s = opt.init({"w": np.zeros(2)})
    assert isinstance(s, optim.ScaleByAdamState) and s.count == 0
    _, s = opt.update({"w": np.ones(2)}, s)
    assert s.count == 1
    np.testing.assert_allclose(s.mu["w"], 0.1)
    np.testing.assert_allclose(s.nu["w"], 0.001)


def test_trace():
    opt = optim.trace(0.5)
    us = [float(u[0]) for u in updates_of(opt, [np.ones(1)] * 3)]
    assert us == pytest.approx([1.0, 1.5, 1.75])
    us = [float(u[0]) for u in updates_of(optim.trace(0.5, nesterov=True), [np.ones(1)] * 2)]
    assert us == pytest.approx([1.5, 1.75])


def test_clip():
    u, _ = optim.clip(0.5).update({"a": np.array([-2.0, 0.1]), "b": None}, optim.EmptyState())
    np.testing.assert_array_equal(u["a"], [-0.5, 0.1])
    assert u["b"] is None


def test_clip_by_global_norm():
    opt = optim.clip_by_global_norm(1.0)
    g = {"a": np.array([3.0, 0.0]), "b": np.array([4.0]), "c": None}
    u, _ = opt.update(g, opt.init(g))
    np.testing.assert_allclose(u["a"], [0.6, 0.0])
    np.testing.assert_allclose(u["b"], [0.8])
    assert u["c"] is None
    assert optim.global_norm(u) == pytest.approx(1.0)
    small = {"a": np.array([0.3]), "b": np.array([0.4])}
    u, _ = opt.update(small, opt.init(small))
    assert u["a"] is small["a"]  # under the limit: untouched


def test_clip_by_global_norm_keeps_float32_with_mixed_tree():
    opt = optim.clip_by_global_norm(1.0)
    g = {"a": np.float32([30.0]), "b": np.array([40.0])}
    u, _ = opt.update(g, opt.init(g))
    assert u["a"].dtype == np.float32 and u["b"].dtype == np.float64
    np.testing.assert_allclose(u["a"], [0.6], rtol=1e-6)


@pytest.mark.parametrize("bad, norm", [(np.inf, "inf"), (-np.inf, "inf"), (np.nan, "nan")])
def test_clip_by_global_norm_refuses_a_non_finite_norm(bad, norm):
    # optax (optax/_src/clipping.py) computes (t / g_norm) * max_norm at g_norm = inf: 0 for
    # every finite element, nan for the infinite ones, silently; so did we (factor 0).
    opt = optim.clip_by_global_norm(1.0)
    g = {"a": np.array([3.0, 4.0]), "b": [np.array([1.0, bad]), np.array([np.inf])]}
    with pytest.raises(FloatingPointError,
                       match=rf"global norm of the updates is {norm} \(the leaf at "
                             rf"\['b'\]\[0\] holds {norm}\).*max_norm=1.0"):
        opt.update(g, opt.init(g))


def test_global_norm_of_inf_and_nan():
    assert optim.global_norm({"a": np.array([1.0, -np.inf])}) == np.inf
    assert np.isnan(optim.global_norm({"a": np.array([np.inf]), "b": np.array([np.nan])}))
    assert optim.global_norm({"a": np.zeros(3), "b": None}) == 0.0
    assert optim.global_norm({"a": np.zeros(0)}) == 0.0


def test_global_norm_at_magnitudes_that_overflow_or_underflow_the_squares():
    # float16 squares overflow above 256 and underflow below 6e-8; float32 squares overflow
    # above 1.8e19. The reference is math.hypot (scaled, exact to float64) of the same values.
    for x in [np.full(5, 300.0, np.float16), np.full(5, 1e-4, np.float16),
              np.float32([1e20, -3e38, 2.0]), np.float32([1e-25, 2e-25]),
              np.array([1e200, 1e200]), np.array([1e-200, 3e-200]),
              np.array([3e200 + 4e200j]), np.complex64([3e20 + 4e20j])]:
        want = math.hypot(*[abs(complex(v)) for v in x.ravel()])
        got = optim.global_norm({"x": x, "y": None})
        assert got == pytest.approx(want, rel=1e-6), (x, got, want)


def test_clip_by_global_norm_of_large_float16_and_float32_updates():
    # The norm overflowed (inf), the factor became 0 and the clipped update was all zeros.
    opt = optim.clip_by_global_norm(1.0)
    u, _ = opt.update({"h": np.full(4, 300.0, np.float16)}, optim.EmptyState())
    assert u["h"].dtype == np.float16
    np.testing.assert_array_equal(u["h"], np.full(4, 0.5, np.float16))
    # max_norm / norm = 2.4e-39 is below float32's smallest normal: scaled without a
    # subnormal factor's lost digits
    u, _ = opt.update({"a": np.float32([3e38, 3e38])}, optim.EmptyState())
    assert u["a"].dtype == np.float32
    np.testing.assert_allclose(u["a"], [0.5 ** 0.5] * 2, rtol=1e-6)


def test_clip_by_global_norm_stops_ff_train_before_the_step():
    import funcflux as ff

    # sqrt's derivative at 0 is inf (as in JAX) while the loss stays finite
    loss = lambda p, x, m: np.sum(m * np.sqrt(p["w"] + x))
    p0 = {"w": np.array([1.0, 2.0])}
    batches = [(np.array([5.0, 0.0]), np.array([0.0, 1.0])),   # gradient [0, 0.35]
               (np.array([-1.0, 0.0]), np.array([1.0, 1.0]))]  # sqrt(0): gradient [inf, 0.35]
    opt = optim.chain(optim.clip_by_global_norm(1.0), optim.sgd(0.1))
    with pytest.raises(FloatingPointError, match=r"norm of the updates is inf \(the leaf at "
                                                 r"\['w'\] holds inf\)") as info, \
            np.errstate(divide="ignore"):
        ff.train(loss, p0, batches, opt, epochs=1, progress=False)
    model, _, _ = info.value.train_result
    # the first step's model, not the zeros and nans that the factor 0 made of the second
    np.testing.assert_allclose(model["w"], [1.0, 2.0 - 0.1 * 0.5 / 2 ** 0.5], rtol=1e-15)


def test_add_decayed_weights_mask_prefix():
    p = {"w": np.ones(2), "b": {"x": np.ones(1), "y": np.ones(1)}}
    g = {"w": np.zeros(2), "b": {"x": np.zeros(1), "y": np.zeros(1)}}
    opt = optim.add_decayed_weights(0.5, mask={"w": True, "b": False})
    u, _ = opt.update(g, opt.init(p), p)
    np.testing.assert_array_equal(u["w"], [0.5, 0.5])
    np.testing.assert_array_equal(u["b"]["x"], [0.0])
    with pytest.raises(ValueError, match="needs the parameters"):
        optim.add_decayed_weights(0.5).update(g, optim.EmptyState())


def test_scale_by_schedule_counts_in_state():
    opt = optim.sgd(lambda n: 0.1 * (n + 1))
    us = [float(u[0]) for u in updates_of(opt, [np.ones(1)] * 3)]
    assert us == pytest.approx([-0.1, -0.2, -0.3])
    state = opt.init(np.zeros(1))
    _, state = opt.update(np.ones(1), state)
    assert state[1] == optim.ScaleByScheduleState(1)


# ----------------------------------------------------------------------------- every optimiser
ALL = {
    "sgd": lambda: optim.sgd(0.1),
    "sgd_momentum": lambda: optim.sgd(0.1, momentum=0.9, nesterov=True),
    "adam": lambda: optim.adam(0.1),
    "adamw": lambda: optim.adamw(0.1),
    "nadam": lambda: optim.nadam(0.1),
    "radam": lambda: optim.radam(0.1),
    "rmsprop": lambda: optim.rmsprop(0.1),
    "rmsprop_centered": lambda: optim.rmsprop(0.1, centered=True, momentum=0.9),
    "adagrad": lambda: optim.adagrad(0.1),
    "adadelta": lambda: optim.adadelta(),
    "lion": lambda: optim.lion(0.1),
    "lamb": lambda: optim.lamb(0.1, weight_decay=0.01),
    "clipped": lambda: optim.chain(optim.clip_by_global_norm(1.0), optim.adam(0.1)),
    "scheduled": lambda: optim.adam(optim.cosine_decay(0.1, 10)),
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_float32_is_kept(name):
    opt = ALL[name]()
    p = {"w": np.float32([[0.5, -1.0], [2.0, 0.1]]), "b": np.float32([0.3])}
    state = opt.init(p)
    for _ in range(3):
        g = {"w": np.float32(p["w"] * 2), "b": np.float32([1.0])}
        u, state = opt.update(g, state, p)
        p = optim.apply_updates(p, u)
        assert u["w"].dtype == np.float32 and u["b"].dtype == np.float32
        assert p["w"].dtype == np.float32 and p["b"].dtype == np.float32
    import funcflux as ff
    for leaf in ff.tree.leaves(state):
        if hasattr(leaf, "dtype"):
            assert leaf.dtype == np.float32, (name, leaf.dtype)


@pytest.mark.parametrize("name", sorted(ALL))
def test_none_leaves_are_skipped(name):
    opt = ALL[name]()
    p = {"w": np.array([1.0, 2.0]), "n": 3, "z": None, "frozen": np.array([5.0])}
    state = opt.init(p)
    for _ in range(2):
        g = {"w": np.array([0.5, -0.5]), "n": None, "z": None, "frozen": None}
        u, state = opt.update(g, state, p)
        assert u["n"] is None and u["z"] is None and u["frozen"] is None
        new = optim.apply_updates(p, u)
        assert new["n"] == 3 and new["z"] is None and new["frozen"] is p["frozen"]
        assert not np.allclose(new["w"], p["w"])
        p = new


def test_state_of_skipped_leaf_is_kept():
    opt = optim.adam(0.1)
    p = {"a": np.ones(2), "b": np.ones(2)}
    state = opt.init(p)
    _, state = opt.update({"a": np.ones(2), "b": np.ones(2)}, state, p)
    mu_b = state[0].mu["b"]
    _, state = opt.update({"a": np.ones(2), "b": None}, state, p)
    assert state[0].mu["b"] is mu_b
    assert state[0].count == 2


def test_update_without_state_entry_names_the_path():
    opt = optim.adam(0.1)
    state = opt.init({"w": np.ones(1), "n": 3})
    with pytest.raises(ValueError, match=r"\['n'\]"):
        opt.update({"w": np.ones(1), "n": np.ones(1)}, state)
