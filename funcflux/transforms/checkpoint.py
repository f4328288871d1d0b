"""``checkpoint`` (alias ``remat``): trade compute for memory in reverse mode.

Reverse mode keeps, for every primitive applied to a traced value, what its
backward rule needs (usually its inputs and output) until the backward pass
reaches it. For a deep block that is most of the memory of a training step.
``checkpoint(block)`` keeps only the block's *inputs*: the forward pass runs the
block on plain values (nothing recorded), and when the backward pass reaches the
block it runs the block again under ``vjp`` and pulls the cotangent through. The
gradient is the same; the backward pass computes the block's forward twice, and
the peak memory falls to the inputs of every block plus the tape of one.

It is a ``custom_vjp`` whose forward saves the inputs and whose backward
recomputes: forward mode (``jvp``, ``jacfwd``) differentiates the block itself,
and every composition (``grad`` of ``grad``, ``hessian``, ``vmap``) goes through the
same rules as any ``custom_vjp``.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

from .custom import custom_vjp
from .reverse import vjp

POLICY = ("checkpoint(..., policy={policy!r}): funcflux recomputes the whole block (JAX's "
          "policy=None, saving nothing inside it); policies that save chosen intermediates "
          "are not supported. Checkpoint a smaller block instead.")


def checkpoint(fun: Callable, *, policy: Any = None,
               static_argnums: int | Sequence[int] = ()) -> Callable:
    """``fun`` with its forward pass recomputed in the backward pass instead of stored.

    Gradients are unchanged; reverse mode keeps only ``fun``'s arguments, not its
    intermediates (``docs/performance.md`` shows what it saves). ``static_argnums``
    marks arguments that are not arrays (sizes, flags, callables): they are passed
    through, not differentiated. ``policy`` must be ``None`` (save nothing inside
    the block), JAX's default.

    >>> import numpy as np, funcflux as ff
    >>> block = ff.checkpoint(lambda x: np.tanh(np.tanh(x) * 2.0))
    >>> x = np.array([0.1, -0.4])
    >>> bool(np.allclose(ff.grad(lambda x: np.sum(block(x)))(x),
    ...                  ff.grad(lambda x: np.sum(np.tanh(np.tanh(x) * 2.0)))(x)))
    True
    """
    if policy is not None:
        raise NotImplementedError(POLICY.format(policy=policy))
    nums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
    nums = tuple(sorted(set(nums)))
    if any(i < 0 for i in nums):
        raise ValueError(f"checkpoint: static_argnums must be non-negative, got {nums}")

    wrapped = recompute_vjp(fun, nums)

    @functools.wraps(fun)
    def checkpointed(*args: Any) -> Any:
        return wrapped(*args)
    return checkpointed


def recompute_vjp(fun: Callable, nums: tuple, forward: Callable | None = None,
                  stage: Callable[[Callable], Callable] | None = None) -> Any:
    """``fun`` as a ``custom_vjp`` that saves only its arguments (those not in ``nums``,
    the static positions) and recomputes ``fun`` under ``vjp`` in the backward pass.

    ``forward`` computes the output in place of ``fun`` (``jit`` passes its staged
    function); ``stage`` wraps the pullback ``pullback(*args, ct) -> cotangents``
    (``jit`` stages it). ``checkpoint`` uses neither.
    """
    def merge(static: Sequence[Any], dyn: Sequence[Any]) -> list:
        it_s, it_d = iter(static), iter(dyn)
        return [next(it_s) if i in nums else next(it_d) for i in range(len(static) + len(dyn))]

    def pullback(*a: Any) -> tuple:
        args, ct = a[:-1], a[-1]
        static = [x for i, x in enumerate(args) if i in nums]
        dyn = [x for i, x in enumerate(args) if i not in nums]
        _, pull = vjp(lambda *d: fun(*merge(static, d)), *dyn)
        return tuple(pull(ct))
    run_pullback = pullback if stage is None else stage(pullback)
    run_forward = fun if forward is None else forward

    def fwd(*args: Any) -> tuple:
        return run_forward(*args), tuple(a for i, a in enumerate(args) if i not in nums)

    def bwd(*rest: Any) -> tuple:
        static, (dyn, ct) = rest[:-2], rest[-2:]
        return run_pullback(*merge(static, dyn), ct)

    wrapped = custom_vjp(fun, nondiff_argnums=nums)
    wrapped.defvjp(fwd, bwd)
    return wrapped


#: JAX's other name for ``checkpoint``.
remat = checkpoint
