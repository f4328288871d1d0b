"""Every registered primitive has a spec line and the rules the transforms need.

Primitives whose name starts with ``_test_`` are ignored: tests declare such
throwaway primitives (e.g. a deliberately wrong rule for ``check_grads``).
"""
from __future__ import annotations

import funcflux  # noqa: F401  (imports every family, so the registry is full)
from funcflux.core.primitive import REGISTRY, PerIndex
from tests.ops.specs import SPECS


def _registered() -> dict:
    return {n: p for n, p in REGISTRY.items() if not n.startswith("_test_")}


def _has_rule(rules, i: int = 0) -> bool:
    if isinstance(rules, PerIndex):  # one rule serving every argument position
        return rules.rule is not None
    try:
        return rules[i] is not None
    except (IndexError, TypeError):
        return False


def _any_rule(rules) -> bool:
    if isinstance(rules, PerIndex):
        return rules.rule is not None
    return any(_has_rule(rules, i) for i in range(min(len(rules), 8)))


def test_every_primitive_has_a_spec():
    covered = {n for s in SPECS for n in s.prim_names}
    missing = sorted(set(_registered()) - covered)
    assert not missing, ("primitives with no Spec line in tests/ops/specs_*.py (add one "
                         "naming them in prims): " + ", ".join(missing))


def test_spec_lines_name_registered_primitives():
    unknown = sorted({n for s in SPECS for n in s.prim_names} - set(REGISTRY))
    assert not unknown, ("Spec lines name primitives that are not registered (typo, or "
                         "renamed primitive): " + ", ".join(unknown))


def test_every_differentiable_primitive_has_rules():
    prims = _registered()
    no_vjp = sorted(n for n, p in prims.items() if not p.nondiff and not _any_rule(p.vjps))
    no_jvp = sorted(n for n, p in prims.items() if not p.nondiff and not _any_rule(p.jvps))
    msg = []
    if no_vjp:
        msg.append("no vjp rule for any argument: " + ", ".join(no_vjp))
    if no_jvp:
        msg.append("no jvp rule for any argument: " + ", ".join(no_jvp))
    assert not msg, ("differentiable primitives missing rules (or mark them nondiff=True): "
                     + "; ".join(msg))


def test_vjp_and_jvp_rules_cover_the_same_arguments():
    mismatched = []
    for n, p in _registered().items():
        if p.nondiff:
            continue
        k = 8 if isinstance(p.vjps, PerIndex) or isinstance(p.jvps, PerIndex) else \
            min(max(len(p.vjps), len(p.jvps)), 8)
        if any(_has_rule(p.vjps, i) != _has_rule(p.jvps, i) for i in range(k)):
            mismatched.append(n)
    assert not mismatched, ("primitives whose vjp and jvp rules cover different arguments: "
                            + ", ".join(sorted(mismatched)))


def test_every_primitive_has_a_batch_rule():
    missing = sorted(n for n, p in _registered().items() if p.batch is None)
    assert not missing, "primitives with no batching rule (def_batch): " + ", ".join(missing)
