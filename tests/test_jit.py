"""ff.jit and ff.make_jaxpr: caching, composition with every transform, errors, inspection.

The whole primitive sweep under jit is tests/ops/test_jit_sweep.py; here are the
rules of staging itself.
"""
from __future__ import annotations


import numpy as np
import pytest

import funcflux as ff
from funcflux import lax, nn, optim

RNG = np.random.default_rng(0)


def close(a, b, **kw):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14, **kw)


def f(x, w):
    return np.sum(np.tanh(x @ w) ** 2) + np.mean(np.sin(w))


# ------------------------------------------------------------------------ caching
def test_traces_once_per_signature():
    calls = []

    def g(x, y):
        calls.append(1)
        return x * y + 1.0

    j = ff.jit(g)
    x, y = RNG.normal(size=3), RNG.normal(size=3)
    close(j(x, y), g(x, y))
    close(j(x + 1, y * 2), (x + 1) * (y * 2) + 1.0)  # new values: replay
    assert len(calls) == 2  # one trace + the eager reference call
    j(np.ones(4), np.ones(4))                        # new shape: traces
    j(np.ones(3, np.float32), np.ones(3, np.float32))  # new dtype: traces
    assert len(calls) == 4 and len(j._cache) == 3
    j.clear_cache()
    j(x, y)
    assert len(calls) == 5


def test_static_arguments_and_python_numbers_are_part_of_the_key():
    calls = []

    def g(x, n, scale=1.0, *, mode="sum"):
        calls.append(1)
        r = x ** n * scale
        return np.sum(r) if mode == "sum" else np.max(r)

    j = ff.jit(g, static_argnums=1, static_argnames="mode")
    x = RNG.normal(size=4)
    close(j(x, 2), g(x, 2))
    close(j(x, 3), g(x, 3))
    close(j(x, 3, 2.0), g(x, 3, 2.0))          # a Python float: traced for its value
    close(j(x, 3, mode="max"), g(x, 3, mode="max"))
    close(j(x, 3, mode="max"), g(x, 3, mode="max"))
    assert len(j._cache) == 4


def test_retracing_warns_and_names_the_argument():
    j = ff.jit(lambda x, y: np.sum(x) + np.sum(y))
    with pytest.warns(RuntimeWarning, match=r"traced 8 times; the signature of argument "
                                            r"\[0\]\[1\] keeps changing"):
        for n in range(1, 10):
            j(np.ones(2), np.ones(n))


# ------------------------------------------------------------------------ composition
@pytest.mark.parametrize("order", ["jit(grad)", "grad(jit)", "jit(grad(jit))"])
def test_grad_in_every_order(order):
    x, w = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 2))
    g = {"jit(grad)": ff.jit(ff.grad(f, argnums=1)),
         "grad(jit)": ff.grad(ff.jit(f), argnums=1),
         "jit(grad(jit))": ff.jit(ff.grad(ff.jit(f), argnums=1))}[order]
    want = ff.grad(f, argnums=1)(x, w)
    close(g(x, w), want)
    close(g(x, w * 2), ff.grad(f, argnums=1)(x, w * 2))


def test_vmap_jvp_and_hessian_compose():
    x, w = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 2))
    xs = RNG.normal(size=(5, 4, 3))
    want = ff.vmap(f, in_axes=(0, None))(xs, w)
    close(ff.jit(ff.vmap(f, in_axes=(0, None)))(xs, w), want)
    close(ff.vmap(ff.jit(f), in_axes=(0, None))(xs, w), want)
    t = RNG.normal(size=w.shape)
    want_t = ff.jvp(lambda w: f(x, w), (w,), (t,))[1]
    close(ff.jit(lambda w, t: ff.jvp(lambda w: f(x, w), (w,), (t,))[1])(w, t), want_t)
    close(ff.jvp(lambda w: ff.jit(f)(x, w), (w,), (t,))[1], want_t)
    h = ff.hessian(lambda w: f(x, w))(w)
    close(ff.jit(ff.hessian(lambda w: f(x, w)))(w), h)
    close(ff.hessian(lambda w: ff.jit(f)(x, w))(w), h)
    # per-example gradients, staged
    pe = ff.jit(ff.vmap(ff.grad(f, argnums=1), in_axes=(0, None)))(xs, w)
    close(pe, np.stack([ff.grad(f, argnums=1)(x, w) for x in xs]))


@pytest.mark.parametrize("order", ["vmap(jit)", "jvp(jit)", "vmap(jvp(jit))", "jvp(vmap(jit))",
                                   "hessian(jit)", "vmap(grad(jit))", "jacfwd(jit)"])
def test_a_jitted_call_under_a_transform_is_staged_once(order):
    """Under vmap and jvp a jitted call is a primitive whose rule is the staged transformed
    function: later calls replay it without running the Python body."""
    calls = []

    def body(x, w):
        calls.append(1)
        return f(x, w)
    jf = ff.jit(body)
    x, w, t = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 2)), RNG.normal(size=(3, 2))
    xs, ts = RNG.normal(size=(5, 4, 3)), RNG.normal(size=(5, 3, 2))
    run = {
        "vmap(jit)": lambda g: ff.vmap(g, in_axes=(0, None))(xs, w),
        "jvp(jit)": lambda g: ff.jvp(lambda w: g(x, w), (w,), (t,)),
        "vmap(jvp(jit))": lambda g: ff.vmap(lambda t: ff.jvp(lambda w: g(x, w), (w,), (t,)))(ts),
        "jvp(vmap(jit))": lambda g: ff.jvp(lambda w: ff.vmap(g, in_axes=(0, None))(xs, w),
                                           (w,), (t,)),
        "hessian(jit)": lambda g: ff.hessian(lambda w: g(x, w))(w),
        "vmap(grad(jit))": lambda g: ff.vmap(ff.grad(g, argnums=1), in_axes=(0, None))(xs, w),
        "jacfwd(jit)": lambda g: ff.jacfwd(g, argnums=1)(x, w),
    }[order]
    want = run(f)
    close(run(jf), want)
    n = len(calls)
    assert n >= 1
    close(run(jf), want)
    assert len(calls) == n, f"{order}: the second call ran the Python body again"


def test_a_closure_over_an_outer_traced_value_runs_inline():
    x0 = RNG.normal(size=3)
    # w is traced by grad outside the jitted function: the result must still depend on it
    g = ff.grad(lambda w: np.sum(ff.jit(lambda x: np.sin(x * w))(x0)))(0.7)
    close(g, np.sum(np.cos(x0 * 0.7) * x0))


def test_closed_over_arrays_are_constants_of_the_trace():
    # As in JAX: an array the function reads from its closure is baked in when traced.
    c = np.ones(3)
    j = ff.jit(lambda x: x + c)
    close(j(np.zeros(3)), np.ones(3))


# ------------------------------------------------------------------------ training
def test_a_jitted_training_step_matches_the_eager_one():
    model = nn.Chain(nn.Dense(10, 16, nn.relu), nn.Dense(16, 2))
    X = RNG.normal(size=(32, 10)).astype(np.float32)
    Y = RNG.integers(0, 2, 32)
    loss = lambda m, x, y: ff.losses.logitcrossentropy(m(x), y)

    def step(s, m, x, y):
        return optim.step(s, m, ff.grad(loss)(m, x, y))

    s = optim.setup(optim.adam(1e-2), model)
    js = ff.jit(step)
    se, me, sj, mj = s, model, s, model
    for _ in range(4):
        se, me = step(se, me, X, Y)
        sj, mj = js(sj, mj, X, Y)
    for a, b in zip(ff.tree.leaves(me), ff.tree.leaves(mj)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert a.dtype == b.dtype
    assert len(js._cache) == 1


# ------------------------------------------------------------------------ semantics
def test_outputs_are_fresh_writable_arrays():
    x = RNG.normal(size=(2, 3))
    for fun in (lambda x: x, lambda x: x.T, lambda x: np.broadcast_to(x[0], (4, 3))):
        j = ff.jit(fun)
        for _ in range(2):  # the tracing call and a replay
            out = j(x)
            assert out.flags.writeable and not np.shares_memory(out, x)


def test_side_effects_run_at_trace_time_only(capsys):
    def g(x):
        print("tracing")
        return x * 2.0
    j = ff.jit(g)
    j(np.ones(2))
    j(np.ones(2))
    assert capsys.readouterr().out == "tracing\n"


def test_pytrees_constants_and_none_outputs():
    j = ff.jit(lambda d: {"y": d["a"] * 2.0, "c": np.arange(3.0), "n": None, "t": (d["b"],)})
    for _ in range(2):
        out = j({"a": np.ones(2), "b": np.zeros(1)})
        close(out["y"], [2.0, 2.0])
        close(out["c"], [0.0, 1.0, 2.0])
        assert out["n"] is None and out["t"][0].shape == (1,)


def test_lax_loops_with_static_bounds_stage():
    j = ff.jit(lambda x: ff.lax.fori_loop(0, 3, lambda i, c: np.tanh(c) + i, x))
    x = RNG.normal(size=2)
    want = x
    for i in range(3):
        want = np.tanh(want) + i
    close(j(x), want)
    close(j(x + 1.0), ff.lax.fori_loop(0, 3, lambda i, c: np.tanh(c) + i, x + 1.0))


# ------------------------------------------------------------------------ errors
def test_python_control_flow_on_a_traced_value_names_the_line():
    def g(x):
        if np.sum(x) > 0:  # the line the error must name
            return x
        return -x
    with pytest.raises(ff.ConcretizationTypeError,
                       match=r"jit: bool\(\) .* at .*test_jit.py:\d+ \(in g\).*static_argnums"):
        ff.jit(g)(np.ones(2))
    with pytest.raises(ff.ConcretizationTypeError, match=r"float\(\)"):
        ff.jit(lambda x: float(x))(np.float64(1.0))
    with pytest.raises(ff.ConcretizationTypeError, match=r"contents of a traced value"):
        ff.jit(lambda x: x[x > 0])(np.ones(2))


def test_an_escaped_staged_value_names_jit():
    kept = []

    def g(x):
        kept.append(x)
        return x * 2.0
    ff.jit(g)(np.ones(2))
    with pytest.raises(ff.UnexpectedTracerError, match="jit"):
        kept[0] + 1.0


def test_argument_errors():
    with pytest.raises(TypeError, match="expected a function"):
        ff.jit(3)
    with pytest.raises(TypeError, match="hashable"):
        ff.jit(lambda x, s: x, static_argnums=1)(np.ones(1), [1, 2])
    with pytest.raises(TypeError, match=r"argument \[0\]\[1\] is a _Unhashable"):
        ff.jit(lambda x, s: x)(np.ones(1), _Unhashable())


class _Unhashable:
    __hash__ = None


# ------------------------------------------------------------------------ inspection
def test_make_jaxpr_prints_one_primitive_per_line():
    text = str(ff.make_jaxpr(lambda x, y: np.sin(x) * y + 1.0)(np.ones(3), np.ones(3)))
    assert text == ("{ lambda  ; a:f64[3] b:f64[3]. let\n"
                    "    c:f64[3] = sin a\n"
                    "    d:f64[3] = multiply c b\n"
                    "    e:f64[3] = add d 1.0\n"
                    "  in (e,) }")


def test_lower_shows_the_passes_and_the_source():
    def g(x):
        unused = np.exp(x)  # noqa: F841  (dead code)
        return np.sin(x) + np.sin(x)  # one sin after CSE
    low = ff.jit(g).lower(np.ones(2))
    names = [e.prim.name for e in low.jaxpr.eqns]
    assert names == ["exp", "sin", "sin", "add"]
    assert [e.prim.name for e in low.optimized.eqns] == ["sin", "add"]
    assert low.source.startswith("def g(a_):") and "sin_0(a_)" in low.source
    assert low.as_text() == low.source


# ------------------------------------------------------------------------ devices
def test_jit_runs_on_the_device_of_its_inputs(put, get):
    x, w = put(RNG.normal(size=(4, 3))), put(RNG.normal(size=(3, 2)))
    g = ff.jit(ff.grad(f, argnums=1))
    for _ in range(2):
        close(get(g(x, w)), ff.grad(f, argnums=1)(get(x), get(w)))


def test_python_ints_are_traced_and_stay_python_numbers():
    """An int (a step count) is an argument like an array: a new value does not trace
    again, and arithmetic on it keeps NumPy's promotion of Python numbers (float32 stays
    float32). Using it as a size needs static_argnums, as in JAX."""
    j = ff.jit(lambda n, x: x * (1.0 - 0.5 ** (n + 1)))
    x = np.ones(2, np.float32)
    for n in range(4):
        out = j(n, x)
        assert out.dtype == np.float32
        close(out, x * (1.0 - 0.5 ** (n + 1)))
    assert len(j._cache) == 1
    with pytest.raises(ff.ConcretizationTypeError, match="use as an index or a size"):
        ff.jit(lambda n: np.zeros(3)[:n])(2)
    assert ff.jit(lambda n: np.zeros(3)[:n], static_argnums=0)(2).shape == (2,)


def test_memory_planning_reuses_only_dead_owned_intermediates():
    from funcflux.transforms.staging import plan_buffers

    def g(x, y):
        a = np.sin(x)          # owned by the program
        b = a * 2.0            # a dies here: b may take its buffer
        v = b.reshape(-1)      # b is viewed: never overwritten
        c = np.exp(b)          # so c gets a fresh buffer
        return v, c + 1.0, x   # x is an input and a result: never a target
    j = ff.jit(g)
    x = RNG.normal(size=(2, 3))
    low = j.lower(x, x)
    plan = plan_buffers(low.optimized)
    names = {i: low.optimized.eqns[i].prim.name for i in plan}
    assert sorted(names.values()) == ["add", "multiply"]   # b into a; c + 1 into c
    for _ in range(3):
        v, c, x_out = j(x, x)
        close(v, (np.sin(x) * 2.0).reshape(-1))
        close(c, np.exp(np.sin(x) * 2.0) + 1.0)
        close(x_out, x)
        assert not np.shares_memory(v, c) and not np.shares_memory(x_out, x)


def test_a_constant_result_is_a_new_array_every_call():
    j = ff.jit(lambda x: (x * 2.0, np.arange(3.0)))
    for _ in range(3):
        y, c = j(np.ones(2))
        close(c, [0.0, 1.0, 2.0])
        c[:] = -1.0  # the caller owns it: the next call must not see this


def test_a_result_typed_by_values_is_refused_not_baked_in():
    """np.linalg.eigvals of a real matrix is real or complex by its values: a graph traced
    on one kind would give the other kind's values the wrong dtype (found by the sweep)."""
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])  # eigenvalues +-i
    with pytest.raises(ff.ConcretizationTypeError, match="'eigvals' .* depends on the values"):
        ff.jit(np.linalg.eigvals)(np.eye(2))
    with pytest.raises(ff.ConcretizationTypeError):
        ff.jit(ff.grad(lambda a: np.sum(np.real(np.linalg.eigvals(a)))))(rot)
    close(ff.jit(np.linalg.eigvals)(rot + 0j), np.linalg.eigvals(rot + 0j))  # complex: fixed


def test_donated_parameters_are_updated_in_place():
    x = RNG.normal(size=(4, 3))

    def step(w, x):
        return w - 0.1 * ff.grad(lambda w: np.sum(np.tanh(x @ w) ** 2))(w)
    j = ff.jit(step, donate_argnums=0)
    w = RNG.normal(size=(3, 3))
    w1 = j(w.copy(), x)                 # the tracing call
    assert "out=a_" in j.lower(w1, x).source
    want = step(w1, x)
    w_in = w1.copy()
    w2 = j(w_in, x)                     # a replay writes the update into w_in
    assert np.shares_memory(w2, w_in)
    close(w2, want)
    plain = ff.jit(step)                # without donation the input is left alone
    w_in = w1.copy()
    plain(w_in, x)
    w3 = plain(w_in, x)
    close(w_in, w1)
    assert not np.shares_memory(w3, w_in)


def test_donation_errors():
    j = ff.jit(lambda a, b: a * 2.0 + b, donate_argnums=0)
    a = np.ones(3)
    j(a.copy(), a)
    with pytest.raises(ValueError, match="shares its memory with another argument"):
        j(a, a)
    ro = np.ones(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        j(ro, a)
    with pytest.raises(ValueError, match="donate_argnums"):
        ff.jit(lambda a: a, static_argnums=0, donate_argnums=0)


# ------------------------------------------------------------------------ debug.print
def test_debug_print_prints_every_call_inside_jit(capsys):
    def f(x):
        ff.debug.print("x={} s={s}", x, s=np.sum(x))
        ff.debug.print("x={} s={s}", x, s=np.sum(x))   # not merged with the first
        print("trace")                                 # Python's print: tracing only
        return x * 2.0
    j = ff.jit(f)
    j(np.array([1.0, 2.0]))
    j(np.array([3.0, 4.0]))
    assert capsys.readouterr().out == ("x=[1. 2.] s=3.0\nx=[1. 2.] s=3.0\ntrace\n"
                                       "x=[3. 4.] s=7.0\nx=[3. 4.] s=7.0\n")
    assert "debug_print" in str(ff.make_jaxpr(f)(np.ones(2)))
    capsys.readouterr()


def test_debug_print_under_transforms(capsys):
    def f(x):
        ff.debug.print("{}", x)
        return np.sum(np.sin(x))
    x = np.array([0.5, 1.5])
    ff.grad(f)(x)                        # eager: the value being differentiated
    jg = ff.jit(ff.grad(f))              # staged under grad: printed on each call
    jg(x)
    jg(x + 1.0)
    assert capsys.readouterr().out.splitlines() == ["[0.5 1.5]", "[0.5 1.5]", "[1.5 2.5]"]
    ff.vmap(f)(np.ones((2, 2)))          # the whole batch
    assert capsys.readouterr().out == "[[1. 1.]\n [1. 1.]]\n"


# ------------------------------------------------------------------------ lax under jit
def test_lax_cond_and_switch_are_one_equation_running_the_chosen_branch():
    def f(p, x, w):  # branches close over w, a value of the enclosing program
        return lax.cond(p > 0, lambda v: {"y": np.sin(v) * w}, lambda v: {"y": np.cos(v) - w}, x)
    j = ff.jit(f)
    x = RNG.normal(size=3)
    for p in (1.0, -1.0, 2.0, -3.0):
        close(j(np.float64(p), x, 0.5 + np.zeros(()))["y"],
              np.sin(x) * 0.5 if p > 0 else np.cos(x) - 0.5)
    assert len(j._cache) == 1
    names = [e.prim.name for e in j.lower(np.float64(1.0), x, np.zeros(())).optimized.eqns]
    assert names == ["greater", "cond"]
    s = ff.jit(lambda i, x: lax.switch(i, BRANCHES_J, x))
    for i in (-2, 0, 1, 2, 9):
        close(s(i, x), BRANCHES_J[min(max(i, 0), 2)](x))
    assert len(s._cache) == 1
    with pytest.raises(TypeError, match="every branch must return the same types"):
        ff.jit(lambda p, x: lax.cond(p, lambda v: v, lambda v: v[:1], x))(np.bool_(True), x)


BRANCHES_J = [lambda v: v * 3.0, np.sin, lambda v: v ** 3]


def test_lax_while_and_fori_with_traced_bounds_are_one_equation():
    def f(lim, x):
        return lax.while_loop(lambda c: c[1] < lim, lambda c: (c[0] + 1, c[1] * 2.0 + 0.1),
                              (0, x))
    j = ff.jit(f)
    for lim in (0.5, 10.0, 1000.0):
        n, v = j(np.float64(lim), np.float64(1.0))
        m, w = f(lim, 1.0)
        assert n == m and type(n) is int
        close(v, w)
    assert len(j._cache) == 1
    h = ff.jit(lambda n, x: lax.fori_loop(0, n, lambda i, c: np.tanh(c) + i, x))
    x = RNG.normal(size=2)
    for n in (0, 1, 4):
        close(h(n, x), lax.fori_loop(0, n, lambda i, c: np.tanh(c) + i, x))
    assert len(h._cache) == 1
    # a cond inside a loop body inside jit
    def g(lim, x):
        return lax.while_loop(lambda c: c < lim,
                              lambda c: lax.cond(c < 1.0, lambda v: v + 0.5, lambda v: v * 2.0, c),
                              x)
    k = ff.jit(g)
    for lim in (20.0, 3.0):
        close(k(np.float64(lim), np.float64(0.1)), g(lim, np.float64(0.1)))
    close(k(np.float64(20.0), np.float64(0.1)), 35.2)  # 0.1, 0.6, 1.1, 2.2, ... 17.6, 35.2


def _staged(j, *args):
    """The jitted function's program for ``args`` (it must be staged, not run inline)."""
    j(*args)
    assert not any(e.inline for e in j._cache.values()), "ran inline, not staged"
    return [e.prim.name for e in j.lower(*args).optimized.eqns]


def test_lax_cond_under_transforms_inside_jit_is_staged():
    """grad, jvp, vmap and hessian of a cond inside jit: a cond equation over the
    transformed branches (the backward pass a cond over their pullbacks)."""
    f = lambda x: np.sum(lax.cond(x[0] > 0, lambda v: np.sin(v) * v, lambda v: v ** 3, x))
    xs = [np.array([1.0, 2.0]), np.array([-1.0, 2.0])]
    j = ff.jit(ff.grad(f))
    assert _staged(j, xs[0]).count("cond") == 1  # the backward pass (the forward is dead)
    assert _staged(ff.jit(ff.value_and_grad(f)), xs[0]).count("cond") == 2
    h = ff.jit(ff.hessian(f))
    assert "cond" in _staged(h, xs[0])
    t = np.array([0.3, -0.7])
    jv = ff.jit(lambda x: ff.jvp(f, (x,), (t,)))
    vg = ff.jit(ff.vmap(ff.grad(f)))
    batch = np.stack(xs)
    assert "cond" in _staged(jv, xs[0])
    assert "where" in _staged(vg, batch)  # a batched predicate: both branches, selected
    for x in xs:
        close(j(x), ff.grad(f)(x))
        close(h(x), ff.hessian(f)(x))
        close(jv(x), ff.jvp(f, (x,), (t,)))
    close(vg(batch), np.stack([ff.grad(f)(x) for x in xs]))
    # a batched operand with a predicate shared by the batch stays one cond
    g = ff.jit(lambda p, xs: ff.vmap(lambda x: lax.switch(p, BRANCHES_J, x))(xs))
    assert "switch" in _staged(g, 1, batch)
    for p in (0, 1, 2):
        close(g(p, batch), BRANCHES_J[p](batch))


def test_lax_cond_reading_a_differentiated_closure_inside_jit_is_converted():
    """A branch that reads a value grad traces from a closure: the closure is converted
    (the value becomes an operand of the cond), so it stays one equation; a branch that
    does not trace to plain primitives (a cond inside) runs every branch and selects."""
    def loss(w, x):
        return np.sum(lax.cond(x[0] > 0, lambda v: np.tanh(v * w), lambda v: v * w ** 2, x))
    j = ff.jit(ff.grad(loss))
    x = np.array([0.5, -1.0])
    names = _staged(j, np.float64(0.7), x)
    assert "cond" in names and "where" not in names
    for xx in (x, -x):
        np.testing.assert_array_equal(j(np.float64(0.7), xx), ff.grad(loss)(0.7, xx))

    def nested(w, x):
        inner = lambda v: lax.cond(v[1] > 0, lambda u: u * w, lambda u: u - w, v)  # noqa: E731
        return np.sum(lax.cond(x[0] > 0, inner, lambda v: v * w ** 2, x))
    j = ff.jit(ff.grad(nested))
    assert "where" in _staged(j, np.float64(0.7), x)
    for xx in (x, -x, np.array([0.5, 1.0])):
        close(j(np.float64(0.7), xx), ff.grad(nested)(0.7, xx))


def test_lax_while_under_transforms_inside_jit_is_staged():
    def w(x):
        return lax.while_loop(lambda c: np.sum(c) < 3.0, lambda c: c * 1.5 + 0.1, x)
    x = np.array([0.5, -0.2, 0.3])
    batch = np.stack([x, -x, 3 * x])
    jv = ff.jit(ff.vmap(w))  # a condition batched by vmap: runs until every member is done
    assert "while" in _staged(jv, batch)
    close(jv(batch), np.stack([w(b) for b in batch]))
    t = np.array([1.0, 0.0, -2.0])
    jj = ff.jit(lambda x: ff.jvp(w, (x,), (t,)))
    assert "while" in _staged(jj, x)
    close(jj(x), ff.jvp(w, (x,), (t,)))
    jf = ff.jit(ff.jacfwd(w))  # jvp under vmap: the primal carry stays unbatched
    assert "while" in _staged(jf, x)
    close(jf(x), ff.jacfwd(w)(x))
    f = lambda x: lax.fori_loop(0, np.sum(x > 0), lambda i, c: c * 2.0 + i, x)  # batched bound
    jb = ff.jit(ff.vmap(f))
    assert "while" in _staged(jb, batch)
    close(jb(batch), np.stack([f(b) for b in batch]))
    with pytest.raises(TypeError, match="reverse-mode"):
        ff.jit(ff.grad(lambda x: np.sum(w(x))))(x)


def test_a_loop_reading_a_batched_closure_inside_jit_runs_unstaged():
    u = np.array([0.1, 0.2, 0.3])

    def w(x, u):
        return lax.while_loop(lambda c: np.sum(c) < np.sum(u) * 10, lambda c: c * 1.5 + u, x)
    x = np.array([0.5, -0.2, 0.3])
    us = np.stack([u, 2 * u])
    got = ff.jit(lambda x, us: ff.vmap(lambda u: w(x, u))(us))(x, us)
    close(got, np.stack([w(x, v) for v in us]))


def test_lax_scan_is_one_equation_traced_once():
    def rnn(w, xs):
        return lax.scan(lambda h, x: (np.tanh(w * h + x), {"h2": h * 2.0}), np.zeros(3), xs)
    xs = RNG.normal(size=(50, 3))
    j = ff.jit(rnn)
    for k in (1.0, 2.0):
        (c, ys), (c0, ys0) = j(0.5 + np.zeros(()), xs * k), rnn(0.5, xs * k)
        close(c, c0)
        close(ys["h2"], ys0["h2"])
    names = [e.prim.name for e in j.lower(0.5 + np.zeros(()), xs).optimized.eqns]
    assert names == ["scan"]  # not 50 unrolled steps
    for reverse in (False, True):
        f = lambda xs: lax.scan(lambda c, x: (c + x, c * x), 0.0, xs, reverse=reverse)
        a, b = ff.jit(f)(np.arange(5.0)), f(np.arange(5.0))
        close(a[0], b[0])
        close(a[1], b[1])
    # under grad or vmap inside jit the scan is unrolled into the staged graph: still right
    loss = lambda w, xs: np.sum(rnn(w, xs)[0] ** 2)
    close(ff.jit(ff.grad(loss))(0.5, xs[:5]), ff.grad(loss)(0.5, xs[:5]))
    close(ff.jit(ff.vmap(lambda x: rnn(0.5, x)[0]))(xs[:8].reshape(2, 4, 3)),
          np.stack([rnn(0.5, x)[0] for x in xs[:8].reshape(2, 4, 3)]))
    with pytest.raises(TypeError, match="the carry f returns must have the carry's type"):
        ff.jit(lambda xs: lax.scan(lambda c, x: (c[:1], x), np.zeros(2), xs))(np.ones((3, 2)))
    with pytest.raises(TypeError, match=r"start from the type f returns \(0.0, not 0\)"):
        ff.jit(lambda xs: lax.scan(lambda c, x: (c + x, x), 0, xs))(np.ones(3))


def test_grad_of_a_jitted_function_replays_staged_code():
    calls = []

    def g(x, w, n):
        calls.append(1)
        h = x @ w
        for _ in range(n):
            h = np.tanh(h)
        return np.sum(h ** 2), h  # a second output that the gradient does not use
    j = ff.jit(g, static_argnums=2)
    x, w = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 2))
    loss = lambda w, f: f(x, w, 2)[0]
    close(ff.grad(loss)(w, j), ff.grad(loss)(w, g))  # traces forward and pullback once each
    before = len(calls)
    for k in (2.0, 3.0):
        close(ff.grad(loss)(w * k, j), ff.grad(loss)(w * k, g))
    assert len(calls) == before + 2  # only the eager reference calls ran g's Python
    # higher orders and forward mode go through the function itself, and stay right
    close(ff.hessian(lambda w: loss(w, j))(w), ff.hessian(lambda w: loss(w, g))(w))
    t = RNG.normal(size=w.shape)
    close(ff.jvp(lambda w: loss(w, j), (w,), (t,))[1], ff.jvp(lambda w: loss(w, g), (w,), (t,))[1])
    close(ff.jacrev(lambda w: j(x, w, 1)[1])(w), ff.jacrev(lambda w: g(x, w, 1)[1])(w))


# -- eval_shape and nn.outputsize ---------------------------------------------------------------
def test_eval_shape_computes_nothing_on_inputs_that_would_not_fit():
    import tracemalloc
    x = ff.ShapeDtypeStruct((10**9, 784), np.float32)  # 3 TB
    model = nn.Chain(nn.Dense(784, 256, nn.relu), nn.Dense(256, 10))
    tracemalloc.start()
    try:
        out = ff.eval_shape(lambda m, x: nn.softmax(m(x), axis=-1).mean(axis=0), model, x)
        g = ff.eval_shape(ff.grad(lambda m, x: np.mean(m(x) ** 2)), model, x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out == ff.ShapeDtypeStruct((10,), np.float32)
    assert [a.shape for a in ff.tree.leaves(g)] == [a.shape for a in ff.tree.leaves(model)]
    assert all(type(a) is ff.ShapeDtypeStruct for a in ff.tree.leaves(g))
    assert peak < 20e6  # the parameters' stand-ins at most (a 784x256 weight is 0.8 MB)


def test_eval_shape_matches_the_call_for_pytrees_kwargs_and_constants():
    def f(x, scale=1.0, *, d):
        return {"y": np.tanh(x) * scale, "n": np.ones(3), "s": x.sum(), "i": 2, "d": d["a"] @ x}
    x = np.ones((4, 5), np.float32)
    kw = {"d": {"a": np.ones((2, 4))}}
    got = ff.eval_shape(f, x, 2.0, **kw)
    want = f(x, 2.0, **kw)
    for k in want:
        assert got[k] == ff.ShapeDtypeStruct(np.shape(want[k]), np.asarray(want[k]).dtype), k
    # a ShapeDtypeStruct and an array of its type give the same answer
    assert ff.eval_shape(np.sin, ff.ShapeDtypeStruct((2,), np.float32)) == \
        ff.eval_shape(np.sin, np.ones(2, np.float32))


def test_eval_shape_refuses_python_control_flow_on_values():
    def f(x):
        return x if x.sum() > 0 else -x
    with pytest.raises(ff.ConcretizationTypeError, match="bool"):
        ff.eval_shape(f, np.ones(3))
    with pytest.raises(ValueError):  # the shape rules raise NumPy's errors
        ff.eval_shape(lambda a, b: a @ b, ff.ShapeDtypeStruct((2, 3), float),
                      ff.ShapeDtypeStruct((4, 5), float))


def test_eval_shape_of_lax_control_flow():
    x = ff.ShapeDtypeStruct((10**8, 3), np.float64)

    def f(x):
        c = lax.cond(x.sum() > 0, lambda v: v * 2.0, lambda v: v - 1.0, x)
        w = lax.while_loop(lambda s: s[0] < 3, lambda s: (s[0] + 1, s[1] * 0.5), (0, x[:2]))
        _, ys = lax.scan(lambda c, r: (c + r, r.sum()), np.zeros(3), x[:7])
        return c, w, ys
    c, (i, w), ys = ff.eval_shape(f, x)
    assert c == ff.ShapeDtypeStruct((10**8, 3), np.float64)
    assert w == ff.ShapeDtypeStruct((2, 3), np.float64)
    assert ys == ff.ShapeDtypeStruct((7,), np.float64)


def test_eval_shape_inside_other_transforms_reads_types_only():
    def f(x):
        s = ff.eval_shape(lambda v: np.outer(v, v), x)
        return np.sum(x) * s.shape[0]
    np.testing.assert_array_equal(ff.grad(f)(np.ones(3)), 3.0)
    assert ff.vmap(lambda v: ff.eval_shape(np.sin, v).shape[0] + v)(np.ones((2, 4))).shape == (2, 4)


def test_outputsize_follows_flux():
    m = nn.Chain(nn.Conv((3, 3), 1, 8, nn.relu), nn.MaxPool((2, 2)), nn.Flatten(),
                 nn.Dense(1352, 10))
    assert nn.outputsize(m, (1, 28, 28), padbatch=True) == (1, 10)
    assert nn.outputsize(m, (10**7, 1, 28, 28)) == (10**7, 10)
    assert nn.outputsize(lambda a, b: np.concatenate([a, b], axis=1), (5, 3), (5, 4)) == (5, 7)
    with pytest.raises(TypeError, match="input shape"):
        nn.outputsize(m)
    with pytest.raises(TypeError, match="tuple of ints"):
        nn.outputsize(m, [1, 28, 28])
    with pytest.raises(ValueError, match="Dense"):  # the layer's own error, as on a real input
        nn.outputsize(m, (1, 1, 30, 30))


def test_a_jitted_call_under_a_named_vmap_runs_inline_so_collectives_see_the_axis():
    g = ff.jit(lambda x: x - ff.lax.pmean(x, "i"))
    xs = np.arange(6.0).reshape(3, 2)
    want = xs - xs.mean(axis=0)
    close(ff.vmap(g, axis_name="i")(xs), want)
    # an unnamed vmap inside the named one: the staged rule meets the named axis below
    got = ff.vmap(lambda x: ff.vmap(lambda y: g(y * x))(np.ones(2)), axis_name="i")(xs)
    close(got, np.stack([want, want], axis=1))
    close(ff.vmap(lambda x: ff.jvp(g, (x,), (x,))[1], axis_name="i")(xs), want)


def test_a_negation_feeding_a_scalar_product_is_folded():
    f = ff.grad(lambda x: np.sum(np.sin(x) - x * 0.5))
    j = ff.jit(f)
    x = RNG.normal(size=4)
    names = [e.prim.name for e in j.lower(x).optimized.eqns]
    assert "negative" not in names
    np.testing.assert_array_equal(j(x), f(x))  # exact: only a sign moved
    g = ff.jit(lambda x: (-x) * 2.0 + (-x))  # used twice: kept
    assert "negative" in [e.prim.name for e in g.lower(x).optimized.eqns]
    np.testing.assert_array_equal(g(x), -3.0 * x)


def _rnn_loss(h0, xs, w):
    c, ys = lax.scan(lambda h, x: (np.tanh(h @ w + x), {"o": np.sum(h * x)}), h0, xs)
    return np.sum(c ** 2) + np.sum(ys["o"])


def test_lax_scan_under_transforms_inside_jit_is_one_equation():
    """grad, jvp, vmap, hessian of a scan inside jit: scans of the transformed body
    (under grad a forward scan saving the carries and a reverse scan of the pullbacks);
    values equal the eager transforms exactly."""
    h0, xs, w = RNG.normal(size=3), RNG.normal(size=(7, 3)), RNG.normal(size=(3, 3)) * 0.5
    t, batch = RNG.normal(size=(7, 3)), RNG.normal(size=(5, 7, 3))
    f = lambda h0, xs: _rnn_loss(h0, xs, w)  # noqa: E731  (w a constant of the program)
    cases = {
        "grad": (ff.grad(f, argnums=(0, 1)), (h0, xs), 2),
        "value_and_grad": (ff.value_and_grad(f), (h0, xs), 2),
        "jvp": (lambda xs: ff.jvp(lambda xs: f(h0, xs), (xs,), (t,)), (xs,), 1),
        "vmap": (ff.vmap(lambda xs: f(h0, xs)), (batch,), 1),
        "vmap(grad)": (ff.vmap(ff.grad(lambda xs: f(h0, xs))), (batch,), 2),
        "hessian": (ff.hessian(lambda h: f(h, xs)), (h0,), 2),
    }
    for name, (g, args, scans) in cases.items():
        j = ff.jit(g)
        names = _staged(j, *args)
        assert names.count("scan") == scans, (name, names)
        for a, b in zip(ff.tree.leaves(j(*args)), ff.tree.leaves(g(*args))):
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_lax_scan_reverse_int_carry_and_closures_under_grad_inside_jit():
    xs, c0 = RNG.normal(size=(6, 3)), RNG.normal(size=3)

    def r(c0, xs):  # reverse, no ys, an int in the carry
        (i, c), _ = lax.scan(lambda ic, x: ((ic[0] + 1, ic[1] * np.sin(x) + ic[0]), None),
                             (0, c0), xs, reverse=True)
        return np.sum(c) * i
    g = ff.grad(r, argnums=(0, 1))
    j = ff.jit(g)
    assert "scan" in _staged(j, c0, xs)
    for a, b in zip(j(c0, xs), g(c0, xs)):
        np.testing.assert_array_equal(a, b)
    w = RNG.normal(size=(3, 3)) * 0.5
    for argnums in (2, (0, 1, 2)):  # the body closes over w, which grad traces: converted
        g = ff.grad(_rnn_loss, argnums=argnums)
        j = ff.jit(g)
        assert _staged(j, c0, xs, w).count("scan") == 2  # forward and backward
        for a, b in zip(ff.tree.leaves(j(c0, xs, w)), ff.tree.leaves(g(c0, xs, w))):
            np.testing.assert_array_equal(a, b)
    us = RNG.normal(size=(4, 3, 3))  # vmap over the closed-over weights
    v = ff.vmap(lambda w: _rnn_loss(c0, xs, w))
    j = ff.jit(lambda us: v(us) * 1.0)
    close(j(us), v(us))


LAYERS_FOR_OUTPUTSIZE = [
    (lambda: nn.Dense(5, 3, nn.relu, rng=0), (4, 5)),
    (lambda: nn.Chain(nn.Conv((3, 3), 2, 4, nn.relu, rng=0), nn.MaxPool((2, 2)), nn.Flatten()),
     (2, 2, 9, 9)),
    (lambda: nn.Conv((3,), 2, 4, stride=2, rng=0), (2, 2, 11)),
    (lambda: nn.Conv((2, 2, 2), 1, 3, rng=0), (1, 1, 4, 5, 6)),
    (lambda: nn.ConvTranspose((3, 3), 2, 3, stride=2, rng=0), (1, 2, 5, 5)),
    (lambda: nn.DepthwiseConv((3, 3), 2, 4, rng=0), (1, 2, 6, 6)),
    (lambda: nn.MeanPool((2,)), (2, 3, 8)),
    (lambda: nn.AdaptiveMaxPool((3, 2)), (1, 2, 7, 5)),
    (lambda: nn.AdaptiveMeanPool((2,)), (1, 2, 7)),
    (lambda: nn.GlobalMeanPool(), (2, 3, 4, 4)),
    (lambda: nn.BatchNorm(3), (4, 3, 2, 2)),
    (lambda: nn.LayerNorm(6), (2, 6)),
    (lambda: nn.GroupNorm(2, 4), (2, 4, 3, 3)),
    (lambda: nn.InstanceNorm(3, affine=True), (2, 3, 5)),
    (lambda: nn.Upsample(2, mode="bilinear"), (1, 2, 3, 4)),
    (lambda: nn.PixelShuffle(2), (1, 8, 3, 3)),
    (lambda: nn.Bilinear(3, 3, 2, rng=0), (4, 3)),
    (lambda: nn.Maxout(lambda: nn.Dense(3, 2, rng=0), 3), (5, 3)),
    (lambda: nn.MultiHeadAttention(8, 2, rng=0), (2, 5, 8)),
    (lambda: nn.Chain(nn.PositionalEmbedding(10, 8), nn.SinusoidalPositionalEmbedding(8)),
     (2, 6, 8)),
    (lambda: nn.Recurrence(nn.RNNCell(3, 4, rng=0)), (2, 5, 3)),
    (lambda: nn.Recurrence(nn.LSTMCell(3, 4, rng=0)), (2, 5, 3)),
    (lambda: nn.Recurrence(nn.GRUCell(3, 4, rng=0)), (5, 3)),
    (lambda: nn.Embedding(10, 4), None),
    (lambda: nn.Dropout(0.5), (3, 4)),
]


@pytest.mark.parametrize("k", range(len(LAYERS_FOR_OUTPUTSIZE)))
def test_outputsize_matches_every_layer(k):
    """nn.outputsize (eval_shape: the shape rules) agrees with running the layer."""
    make, shape = LAYERS_FOR_OUTPUTSIZE[k]
    layer = make()
    if shape is None:  # integer input: eval_shape of the layer on token ids
        x = RNG.integers(0, 10, size=(3, 7))
        got = ff.eval_shape(layer, ff.ShapeDtypeStruct(x.shape, x.dtype))
        assert got == ff.ShapeDtypeStruct(layer(x).shape, layer(x).dtype)
        return
    x = RNG.normal(size=shape).astype(np.float32)
    assert nn.outputsize(layer, shape) == tuple(layer(x).shape)


def test_lax_while_reading_a_transformed_closure_inside_jit_is_converted():
    x = np.array([0.5, -0.2, 0.3])

    def w(s):  # the body and the test close over s, which jvp (and vmap) trace
        return lax.while_loop(lambda c: np.sum(c) < 3.0 + s[0], lambda c: c * 1.5 + s, x)
    s, t = np.array([0.1, 0.2, 0.3]), np.array([1.0, 0.0, -1.0])
    jv = ff.jit(lambda s: ff.jvp(w, (s,), (t,)))
    assert "while" in _staged(jv, s)
    for a, b in zip(jv(s), ff.jvp(w, (s,), (t,))):
        np.testing.assert_array_equal(a, b)
    ss = np.stack([s, 2 * s, 0.5 * s])
    vm = ff.jit(ff.vmap(w))
    assert "while" in _staged(vm, ss)
    close(vm(ss), np.stack([w(v) for v in ss]))
