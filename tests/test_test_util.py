"""check_grads: passes on correct functions, fails loudly (mode, order, path) on wrong rules.

The deliberately wrong primitives are named ``_test_*`` and removed from the
registry after each test; the completeness test also ignores that prefix.
"""
from __future__ import annotations

import collections

import numpy as np
import pytest

import funcflux.numpy as fnp
from funcflux.core.primitive import REGISTRY, primitive
from funcflux.ops.base import elementwise_batch
from funcflux.test_util import check_grads


@pytest.fixture
def declare():
    """Declare throwaway primitives; forget them afterwards."""
    names = []

    def make(name, impl):
        assert name.startswith("_test_")
        names.append(name)
        p = primitive(name, impl)
        p.def_batch(elementwise_batch(p))
        return p

    yield make
    for n in names:
        REGISTRY.pop(n, None)


def _sin(declare, vjp_scale=1.0, jvp_scale=1.0, name="_test_sin"):
    p = declare(name, np.sin)
    p.def_vjp(lambda ct, ans, x: ct * np.cos(x) * vjp_scale)
    p.def_jvp(lambda t, ans, x: t * np.cos(x) * jvp_scale)
    return p


Pair = collections.namedtuple("Pair", "w b")


# ----------------------------------------------------------------------------- passing
def test_plain_function():
    x, y = np.array([0.1, -0.4, 0.7]), np.array([2.0, 3.0, -1.0])
    check_grads(lambda x, y: np.sum(np.tanh(x) * y), (x, y))


def test_pytree_args_and_outputs_with_constant_leaves():
    rng = np.random.default_rng(1)
    params = {"layer": Pair(w=rng.normal(size=(3, 2)), b=rng.normal(size=2)),
              "scale": 1.5, "steps": 3, "on": True}

    def f(p, x):
        h = np.tanh(x @ p["layer"].w + p["layer"].b) * p["scale"] ** p["steps"]
        return {"h": h, "positive": h > 0, "total": np.sum(h ** 2) if p["on"] else 0.0}

    check_grads(f, (params, rng.normal(size=(4, 3))))


def test_modes_order_and_float32():
    x = np.array([0.3, 1.2], dtype=np.float32)
    check_grads(lambda x: np.exp(x) * x, (x,), order=1, modes=("rev",))
    check_grads(lambda x: np.exp(x) * x, (x,), order=3, modes=("fwd",))


def test_python_float_argument():
    check_grads(lambda x: np.sin(x) * x, (0.7,))


def test_correct_custom_primitive_passes(declare):
    p = _sin(declare)
    check_grads(lambda x: p(x) * 2.0, (np.array([0.2, 1.0]),))


# ----------------------------------------------------------------------------- failing
def test_wrong_vjp_names_reverse_order_and_path(declare):
    p = _sin(declare, vjp_scale=1.1)
    args = ({"a": np.array(0.5), "b": [np.array([0.1, 0.2]), np.array([0.3, 0.4])]},)
    f = lambda d: d["a"] * np.sum(d["b"][0]) + np.sum(p(d["b"][1]))
    check_grads(f, args, modes=("fwd",), order=1)  # forward rules are right
    with pytest.raises(AssertionError) as e:
        check_grads(f, args)
    msg = str(e.value)
    assert "reverse mode at order 1" in msg
    assert "args[0]['b'][1]" in msg
    assert "expected (finite differences)" in msg and "actual" in msg


def test_wrong_jvp_names_forward_output_and_input(declare):
    p = _sin(declare, jvp_scale=-1.0)
    f = lambda x, y: {"keep": x * 2.0, "bad": p(y) + x}
    args = (np.array([0.5, 0.6]), np.array([0.1, 0.2]))
    with pytest.raises(AssertionError) as e:
        check_grads(f, args)
    msg = str(e.value)
    assert "forward mode at order 1" in msg
    assert "output['bad']" in msg
    assert "wrong one(s): args[1]" in msg and "args[0]" not in msg.split("wrong one(s):")[1]


def test_wrong_second_derivative_is_caught_at_order_2(declare):
    cos = declare("_test_cos", np.cos)
    cos.def_vjp(lambda ct, ans, x: ct * np.sin(x))  # sign error: only seen by derivatives of it
    cos.def_jvp(lambda t, ans, x: -t * np.sin(x))
    sin = declare("_test_sin_outer", np.sin)
    sin.def_vjp(lambda ct, ans, x: ct * cos(x))
    sin.def_jvp(lambda t, ans, x: t * cos(x))
    x = (np.array([0.3, -0.8, 1.1]),)
    check_grads(lambda x: sin(x), x, order=1)
    with pytest.raises(AssertionError) as e:
        check_grads(lambda x: sin(x), x, order=2)
    msg = str(e.value)
    assert "reverse mode at order 2" in msg and "vjp of the" in msg
    assert "args[0]" in msg


def test_wrong_cotangent_shape_is_reported(declare):
    p = declare("_test_shape", lambda x: x * 2.0)
    p.def_vjp(lambda ct, ans, x: fnp.sum(ct) * 2.0)
    p.def_jvp(lambda t, ans, x: t * 2.0)
    with pytest.raises(AssertionError, match=r"reverse mode.*cotangent of args\[0\] has shape"):
        check_grads(lambda x: p(x), (np.ones(3),), modes=("rev",))


def test_registry_forgets_test_primitives(declare):
    _sin(declare, name="_test_forget")
    assert "_test_forget" in REGISTRY


def test_registry_is_clean_afterwards():
    assert not [n for n in REGISTRY if n in ("_test_forget", "_test_sin", "_test_cos")]


def test_bad_arguments():
    with pytest.raises(TypeError, match="tuple of positional"):
        check_grads(np.sin, np.ones(2))
    with pytest.raises(ValueError, match="unknown mode"):
        check_grads(np.sin, (np.ones(2),), modes=("backward",))
    with pytest.raises(ValueError, match="no floating-point leaf"):
        check_grads(lambda i: i * 2, (np.arange(3),))


# ----------------------------------------------------------------------------- complex
Z = (np.array([1.0 + 2.0j, 0.3 - 0.1j, -0.7 + 0.4j]),)


def test_complex_functions_pass():
    check_grads(lambda z: np.exp(z) * np.sin(z), Z)                # holomorphic
    check_grads(lambda z: np.abs(z) + np.real(z) * np.imag(z), Z)  # real outputs
    check_grads(lambda z: np.conj(z) * z, Z)                       # neither
    check_grads(lambda x: np.real(np.exp(1j * x)), (np.array([0.3, -1.2]),))  # real -> real
    check_grads(lambda z: z * 2.0, (np.array([1.0 + 1.0j], dtype=np.complex64),))


def _conj_prim(declare, vjp, name):
    p = declare(name, np.conjugate)
    p.def_vjp(vjp)
    p.def_jvp(lambda t, ans, x: np.conjugate(t))
    return p


def test_conjugate_missing_in_a_conj_rule_is_caught(declare):
    # conj's transpose under Re sum(a * b) is conj: passing ct through is the adjoint's
    # mistake in the other convention, and must fail.
    good = _conj_prim(declare, lambda ct, ans, x: np.conjugate(ct), "_test_conj_good")
    check_grads(lambda z: good(z) * z, Z)
    bad = _conj_prim(declare, lambda ct, ans, x: ct, "_test_conj_bad")
    check_grads(lambda z: bad(z) * z, Z, modes=("fwd",))
    with pytest.raises(AssertionError, match="reverse mode at order 1"):
        check_grads(lambda z: bad(z) * z, Z, order=1)
    with pytest.raises(AssertionError, match="reverse mode"):
        check_grads(lambda z: bad(z) * z, Z)


def test_extra_conjugate_in_a_holomorphic_rule_is_caught(declare):
    # JAX's convention: vjp(ct) = ct * f'(z), no conjugate (torch's would be ct * conj(f')).
    p = declare("_test_cexp", np.exp)
    p.def_vjp(lambda ct, ans, x: ct * np.conjugate(ans))
    p.def_jvp(lambda t, ans, x: t * ans)
    check_grads(lambda z: p(z), Z, modes=("fwd",))
    with pytest.raises(AssertionError, match="reverse mode at order 1"):
        check_grads(lambda z: p(z), Z, order=1)


def test_wrong_complex_jvp_is_caught(declare):
    p = declare("_test_cabs", np.abs)
    p.def_vjp(lambda ct, ans, x: ct * np.conjugate(x) / ans)
    p.def_jvp(lambda t, ans, x: np.real(t * x) / ans)  # conjugate missing: wrong for Im(t)
    check_grads(lambda z: p(z), Z, modes=("rev",), order=1)
    with pytest.raises(AssertionError, match="forward mode at order 1"):
        check_grads(lambda z: p(z), Z, modes=("fwd",), order=1)


def test_real_part_only_rule_is_caught(declare):
    # A rule that ignores the imaginary part of the direction: caught because the checker
    # perturbs real and imaginary parts at once.
    p = declare("_test_csq", np.square)
    p.def_vjp(lambda ct, ans, x: ct * 2.0 * x)
    p.def_jvp(lambda t, ans, x: np.real(t) * 2.0 * x)
    with pytest.raises(AssertionError, match="forward mode at order 1"):
        check_grads(lambda z: p(z), Z, modes=("fwd",), order=1)
