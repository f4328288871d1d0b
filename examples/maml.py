"""MAML on sinusoids: ``grad`` through an inner SGD step (a gradient of a gradient).

    python examples/maml.py

Each task is a sine wave ``y = a * sin(x + phase)`` with a random amplitude
and phase; a task gives 10 points to adapt on and 10 others to be judged on.
Model-agnostic meta-learning (Finn et al., 2017) looks for initial weights
from which ONE gradient step on a task's 10 points fits that task well:

    adapted = params - alpha * grad(loss)(params, support)      # inner step
    meta_loss = loss(adapted, query)                            # after adapting
    params -= beta * grad(meta_loss)(params)                    # outer step

The outer ``ff.grad`` differentiates through the inner ``ff.grad``, so the
meta-gradient contains second derivatives; funcflux computes them by
differentiating the inner backward pass, which is plain traced NumPy too. A
meta-batch of tasks is handled by ``ff.vmap`` over the task axis, inside the
outer ``grad``. The script prints the meta-loss as it falls, and the loss on
new tasks before and after one adaptation step, for the initial and the
meta-trained weights.
"""
import argparse
import sys

import numpy as np

import funcflux as ff
from funcflux import losses, nn, optim


def sample_tasks(rng, n_tasks, k):
    """``n_tasks`` sine waves; per task ``k`` support and ``k`` query points, shape (T, k, 1)."""
    amp = rng.uniform(0.1, 5.0, (n_tasks, 1, 1))
    phase = rng.uniform(0.0, np.pi, (n_tasks, 1, 1))
    x = rng.uniform(-5.0, 5.0, (n_tasks, 2 * k, 1))
    y = amp * np.sin(x + phase)
    x, y = x.astype(np.float32), y.astype(np.float32)
    return x[:, :k], y[:, :k], x[:, k:], y[:, k:]


def loss(model, x, y):
    return losses.mse(model(x), y)


def adapt(model, x, y, alpha):
    """One SGD step on a task's support set; differentiable in ``model``."""
    g = ff.grad(loss)(model, x, y)
    return ff.tree.map(lambda p, gp: p - alpha * gp, model, g)


def task_meta_loss(model, xs, ys, xq, yq, alpha):
    return loss(adapt(model, xs, ys, alpha), xq, yq)


def meta_loss(model, xs, ys, xq, yq, alpha):
    """Mean over a batch of tasks (leading axis) of the post-adaptation query loss."""
    per_task = ff.vmap(task_meta_loss, in_axes=(None, 0, 0, 0, 0, None))(model, xs, ys, xq, yq,
                                                                         alpha)
    return np.mean(per_task)


def evaluate(model, tasks, alpha):
    """Mean query loss before adapting and after one inner step, over held-out tasks."""
    xs, ys, xq, yq = tasks
    before = float(np.mean([loss(model, a, b) for a, b in zip(xq, yq)]))
    after = float(meta_loss(model, xs, ys, xq, yq, alpha))
    return before, after


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=1000, help="meta-steps")
    p.add_argument("--tasks", type=int, default=16, help="tasks per meta-step")
    p.add_argument("--k", type=int, default=10, help="points per support and query set")
    p.add_argument("--alpha", type=float, default=0.01, help="inner step size")
    p.add_argument("--lr", type=float, default=2e-3, help="outer (Adam) step size")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    model = nn.Chain(nn.Dense(1, 40, nn.relu, rng=rng), nn.Dense(40, 40, nn.relu, rng=rng),
                     nn.Dense(40, 1, rng=rng))
    held_out = sample_tasks(np.random.default_rng(12345), 100, args.k)
    init_before, init_after = evaluate(model, held_out, args.alpha)

    meta_value_and_grad = ff.value_and_grad(meta_loss)   # grad of (a function that calls grad)
    state = optim.setup(optim.adam(args.lr), model)
    every = max(1, args.steps // 6)
    running = []
    for step in range(1, args.steps + 1):
        value, g = meta_value_and_grad(model, *sample_tasks(rng, args.tasks, args.k), args.alpha)
        state, model = optim.step(state, model, g)
        running.append(float(value))
        if step % every == 0 or step == args.steps:
            print(f"meta-step {step:4d}  meta-loss {np.mean(running):.3f}")
            running = []

    before, after = evaluate(model, held_out, args.alpha)
    print("query loss on 100 new tasks      before adapting   after one step")
    print(f"  initial weights                  {init_before:8.3f}        {init_after:8.3f}")
    print(f"  meta-trained weights             {before:8.3f}        {after:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
