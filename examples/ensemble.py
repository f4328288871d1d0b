"""An ensemble of 16 models trained at once: ``vmap`` over stacked parameters.

    python examples/ensemble.py

``ff.tree.stack`` turns 16 models of the same shape into ONE model whose
arrays have a leading axis of 16 (a Dense weight of shape (16, out, in)).
``ff.vmap(..., in_axes=(0, None, None))`` maps over that axis of the model
and shares the batch, so one call computes 16 forward passes, 16 losses and
16 gradients with batched matrix products instead of a Python loop. The
optimiser runs on the stacked model unchanged: Adam's update is elementwise,
so one Adam over the stack is 16 independent Adams. The script checks that
model 3 of the ensemble ends exactly where training it alone ends, prints each
model's loss and accuracy, and compares the ensemble's averaged prediction with
its members.

The last section trains an ensemble WITH dropout: ``nn.apply(model, x, rng=key)``
draws the masks with ``ff.random``, so mapping ``vmap`` over a batch of keys (one
per member, ``ff.random.split``) gives every member its own masks, as if each were
trained alone with its own key.
"""
import argparse
import sys
import time

import numpy as np

import funcflux as ff
from funcflux import data, losses, nn, optim


def build_model(seed: int) -> nn.Chain:
    return nn.Chain(nn.Dense(2, 16, nn.tanh, rng=seed), nn.Dense(16, 16, nn.tanh, rng=seed + 1000),
                    nn.Dense(16, 2, rng=seed + 2000))


def loss(model, x, y):
    return losses.logitcrossentropy(model(x), y)


def build_dropout_model(seed: int) -> nn.Chain:
    return nn.Chain(nn.Dense(2, 32, nn.tanh, rng=seed), nn.Dropout(0.2),
                    nn.Dense(32, 2, rng=seed + 1000))


def dropout_loss(model, x, y, key):
    """Training mode: the Dropout masks come from ``key``."""
    logits, _ = nn.apply(model, x, rng=key)
    return losses.logitcrossentropy(logits, y)


def train_with_dropout(model, loader, epochs, lr, key, n_models):
    """Adam on a stacked ensemble; each step maps over one key per member."""
    grad = ff.vmap(ff.grad(dropout_loss), in_axes=(0, None, None, 0))
    state = optim.setup(optim.adam(lr), model)
    step = 0
    for _ in range(epochs):
        for x, y in loader:
            keys = ff.random.split(ff.random.fold_in(key, step), n_models)
            state, model = optim.step(state, model, grad(model, x, y, keys))
            step += 1
    return model


def train(model, loader, epochs, lr, batched):
    """Adam on one model, or on a stacked ensemble (``batched=True``) through vmap."""
    grad = ff.grad(loss)
    if batched:
        grad = ff.vmap(grad, in_axes=(0, None, None))   # one gradient per model
    state = optim.setup(optim.adam(lr), model)
    for _ in range(epochs):
        for x, y in loader:
            state, model = optim.step(state, model, grad(model, x, y))
    return model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", type=int, default=16)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    x_train, y_train = data.make_moons(400, noise=0.3, rng=args.seed)
    x_test, y_test = data.make_moons(2000, noise=0.3, rng=args.seed + 1)
    loader = data.DataLoader((x_train, y_train), batchsize=50, shuffle=True, rng=args.seed)

    members = [build_model(args.seed + 10 * i) for i in range(args.models)]
    ensemble = ff.tree.stack(members)
    print(f"{args.models} models stacked into one:", ensemble)
    print("first layer's weight:", ensemble.layers[0].weight.shape)

    t0 = time.perf_counter()
    ensemble = train(ensemble, loader, args.epochs, args.lr, batched=True)
    t_ensemble = time.perf_counter() - t0

    k = min(3, args.models - 1)
    loader = data.DataLoader((x_train, y_train), batchsize=50, shuffle=True, rng=args.seed)
    t0 = time.perf_counter()
    alone = train(members[k], loader, args.epochs, args.lr, batched=False)
    t_one = time.perf_counter() - t0
    member_k = ff.tree.unstack(ensemble)[k]
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(ff.tree.leaves(member_k),
                                                            ff.tree.leaves(alone)))
    print(f"model {k} trained in the ensemble vs alone: max difference {diff:.1e}")
    print(f"time: {t_ensemble:.2f} s for all {args.models} models at once, {t_one:.2f} s for one "
          f"alone ({args.models * t_one / t_ensemble:.1f}x faster than {args.models} runs)")

    test_losses = ff.vmap(loss, in_axes=(0, None, None))(ensemble, x_test, y_test)
    logits = ff.vmap(lambda m, x: m(x), in_axes=(0, None))(ensemble, x_test)  # (models, N, 2)
    accs = np.mean(np.argmax(logits, axis=-1) == y_test, axis=1)
    print("model  test loss  test accuracy")
    for i, (l, a) in enumerate(zip(test_losses, accs)):
        print(f"{i:5d}  {float(l):9.4f}  {a:13.1%}")
    probs = np.exp(logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True))
    ens_acc = float(np.mean(np.argmax(probs.mean(axis=0), axis=-1) == y_test))
    print(f"members' accuracy {accs.min():.1%} to {accs.max():.1%}; "
          f"ensemble (mean probability) {ens_acc:.1%}")

    # -- per-member dropout: vmap over a batch of keys --------------------------------
    key = ff.random.key(args.seed)
    dmembers = [build_dropout_model(args.seed + 10 * i) for i in range(args.models)]
    dropout_ens = ff.tree.stack(dmembers)
    x0, y0 = x_train[:50], y_train[:50]
    keys = ff.random.split(key, args.models)
    masks = ff.vmap(lambda k: nn.apply(nn.Dropout(0.5), np.ones(32), rng=k)[0])(keys)
    distinct = len({m.tobytes() for m in masks})
    print(f"dropout masks drawn from {args.models} keys under vmap: {distinct} distinct")
    batched = ff.vmap(ff.grad(dropout_loss), in_axes=(0, None, None, 0))(dropout_ens, x0, y0, keys)
    looped = ff.tree.stack([ff.grad(dropout_loss)(m, x0, y0, k) for m, k in zip(dmembers, keys)])
    ddiff = max(float(np.max(np.abs(a - b))) for a, b in zip(ff.tree.leaves(batched),
                                                             ff.tree.leaves(looped)))
    print(f"dropout gradients, vmap over keys vs a loop over members: max difference {ddiff:.1e}")
    loader = data.DataLoader((x_train, y_train), batchsize=50, shuffle=True, rng=args.seed)
    dropout_ens = train_with_dropout(dropout_ens, loader, args.epochs, args.lr, key, args.models)
    dlogits = ff.vmap(lambda m, x: m(x), in_axes=(0, None))(dropout_ens, x_test)
    dprobs = np.exp(dlogits - np.logaddexp.reduce(dlogits, axis=-1, keepdims=True))
    dacc = float(np.mean(np.argmax(dprobs.mean(axis=0), axis=-1) == y_test))
    print(f"dropout ensemble, trained with per-member masks: test accuracy (mean probability) "
          f"{dacc:.1%}")
    ok = diff < 1e-4 and ddiff < 1e-5 and distinct == args.models
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
