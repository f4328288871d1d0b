"""Newton-CG for logistic regression: Hessian-vector products from ``jvp(grad)``.

    python examples/newton.py

Newton's method solves ``H d = -g`` at every iteration (``g`` the gradient,
``H`` the Hessian of the loss). Conjugate gradients (CG) solve that system
using only products ``H v``, never ``H`` itself, and forward-over-reverse
differentiation gives such a product for about the cost of two gradients:

    hvp = lambda w, v: ff.jvp(ff.grad(loss), (w,), (v,))[1]

so Newton-CG needs O(d) memory where the Hessian needs O(d^2). The script fits
an L2-regularised logistic regression on synthetic data by inexact Newton
(CG stops at a relative residual of min(0.5, sqrt|g|), so early steps are
cheap), prints each iteration (loss, gradient norm, CG tolerance and
iterations, and how far the CG direction is from the exact Newton direction
computed with ``ff.hessian`` and ``np.linalg.solve``), and checks that the
final weights match those of Newton's method on the exact Hessian.
"""
import argparse
import sys

import numpy as np

import funcflux as ff


def make_problem(rng, n, d):
    """Labels in {-1, +1} from a noisy linear rule on correlated features (float64)."""
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    X = rng.standard_normal((n, d)) @ (np.eye(d) + mix)
    w_true = rng.standard_normal(d)
    y = np.where(X @ w_true + rng.standard_normal(n) > 0, 1.0, -1.0)
    return X, y


def make_loss(X, y, lam):
    def loss(w):
        """Mean logistic loss plus (lam / 2) |w|^2; plain NumPy."""
        return np.mean(np.logaddexp(0.0, -y * (X @ w))) + 0.5 * lam * np.sum(w * w)
    return loss


def conjugate_gradient(matvec, b, tol=1e-10, max_iter=None):
    """Solve ``A x = b`` for symmetric positive definite ``A`` given as ``matvec(v) = A v``.

    Returns ``(x, iterations)``; stops when ``|r| <= tol * |b|``.
    """
    x = np.zeros_like(b)
    r = b.copy()            # residual b - A x, with x = 0
    p = r.copy()
    rr = r @ r
    stop = (tol * np.linalg.norm(b)) ** 2
    max_iter = max_iter or 2 * len(b)   # d steps in exact arithmetic; rounding may need more
    for k in range(max_iter):
        if rr <= stop:
            return x, k
        Ap = matvec(p)
        step = rr / (p @ Ap)
        x = x + step * p
        r = r - step * Ap
        rr, rr_old = r @ r, rr
        p = r + (rr / rr_old) * p
    return x, max_iter


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=500, help="examples")
    ap.add_argument("--d", type=int, default=20, help="features")
    ap.add_argument("--lam", type=float, default=1e-2, help="L2 regularisation")
    ap.add_argument("--iters", type=int, default=8, help="Newton iterations")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    X, y = make_problem(np.random.default_rng(args.seed), args.n, args.d)
    loss = make_loss(X, y, args.lam)
    grad = ff.grad(loss)

    def hvp(w, v):
        return ff.jvp(grad, (w,), (v,))[1]   # forward-mode derivative of the gradient

    # The Hessian-vector product agrees with the full Hessian on a random vector.
    w0, v = np.zeros(args.d), np.random.default_rng(1).standard_normal(args.d)
    H0 = ff.hessian(loss)(w0)
    print(f"|hvp - H v| = {np.linalg.norm(hvp(w0, v) - H0 @ v):.1e}  (d = {args.d})")

    print("iter        loss    |grad|   CG tol   CG its   |d_cg - d_exact| / |d_exact|")
    w = w0
    for it in range(args.iters):
        g = grad(w)
        # Inexact Newton: solve only as accurately as the gradient is small (superlinear
        # convergence for far fewer CG iterations than d in the early steps).
        tol = min(0.5, np.sqrt(np.linalg.norm(g)))
        d, its = conjugate_gradient(lambda u: hvp(w, u), -g, tol=tol, max_iter=2 * args.d)
        d_exact = np.linalg.solve(ff.hessian(loss)(w), -g)
        rel = np.linalg.norm(d - d_exact) / max(np.linalg.norm(d_exact), 1e-300)
        print(f"{it:4d}  {float(loss(w)):.8f}  {np.linalg.norm(g):.1e}  {tol:7.0e}  {its:7d}"
              f"   {rel:.1e}")
        w = w + d   # full Newton steps: the regularised logistic loss is smooth and convex
        if np.linalg.norm(g) < 1e-13:
            break
    g_final = np.linalg.norm(grad(w))

    # Reference: Newton's method with the exact Hessian, from the same start.
    w_ref = w0
    for _ in range(args.iters):
        w_ref = w_ref - np.linalg.solve(ff.hessian(loss)(w_ref), grad(w_ref))
    diff = np.max(np.abs(w - w_ref))
    print(f"final |grad| {g_final:.1e}; max |w_newton_cg - w_exact_newton| = {diff:.1e}")
    train_acc = float(np.mean(np.sign(X @ w) == y))
    print(f"training accuracy {train_acc:.1%}")
    if not (g_final < 1e-8 and diff < 1e-8):
        print("Newton-CG did not converge to the exact Newton solution", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
