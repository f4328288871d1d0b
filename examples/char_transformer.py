"""A small decoder-only transformer that learns to write Shakespeare, one character at a time.

    pip install ".[examples]"
    python examples/char_transformer.py          # a few minutes on a laptop CPU

The text is the first 95 KB of "tiny shakespeare" (examples/data/, public domain),
61 distinct characters. The model is GPT's shape in miniature: token embeddings
plus learned positional embeddings, then blocks of causal multi-head
self-attention and an MLP, each behind a LayerNorm and added back to its input
(pre-norm residual blocks), a final LayerNorm and a linear head giving the
logits of the next character at every position. It trains with Adam on random
windows of the text, with a progress bar (tqdm), and then

- prints the **unigram entropy** of the text, the loss of a model that knows only
  how often each character occurs, beside the final training and validation
  losses (in nats per character), and exits with status 1 if the validation loss
  is not well below it (in the default setting; ``--tiny`` only checks that the
  loss fell);
- writes ``char_transformer_loss.png`` (the loss curves, with the unigram entropy
  drawn across) when matplotlib is installed;
- prints a sample generated from the prompt ``--prompt``;
- as a second section, computes the gradient of every sequence of one batch
  separately with ``ff.vmap(ff.grad(loss))`` and prints their norms, checking
  one against ``ff.grad`` of that sequence alone.

Flags: ``--steps`` (default 1500), ``--batch``, ``--context``, ``--dim``,
``--heads``, ``--layers``, ``--lr``, ``--seed``, ``--out DIR`` (where the plot
goes), ``--quiet``, ``--tiny`` (a tiny model for a few steps: the tests' setting),
``--text FILE`` (train on another UTF-8 text), ``--jit`` (stage the training step
with ``ff.jit``).
"""
import argparse
import os
import sys
import time

import numpy as np

import funcflux as ff
from funcflux import losses, nn, optim

HERE = os.path.dirname(os.path.abspath(__file__))
TEXT = os.path.join(HERE, "data", "tiny_shakespeare.txt")
# The default run must end with a validation loss at most this fraction of the unigram entropy.
TARGET = 0.8


# ----------------------------------------------------------------------------- the model
@ff.functor("ln1", "attn", "ln2", "fc", "proj")
class Block(nn.Module):
    """``x + attn(ln1(x))``, then ``x + proj(gelu(fc(ln2(x))))``: a pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, rng: np.random.Generator):
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiHeadAttention(dim, heads, rng=rng)
        self.ln2 = nn.LayerNorm(dim)
        self.fc = nn.Dense(dim, 4 * dim, nn.gelu, rng=rng)
        self.proj = nn.Dense(4 * dim, dim, rng=rng)
        self._freeze()

    def __call__(self, x):
        x = x + self.attn(self.ln1(x), is_causal=True)
        return x + self.proj(self.fc(self.ln2(x)))

    def _repr_inner(self) -> str:
        return f"Block({self.attn._repr_inner()}, MLP {self.fc.weight.shape[1]} => " \
               f"{self.fc.weight.shape[0]} => {self.proj.weight.shape[0]})"


@ff.functor("embed", "pos", "blocks", "ln", "head")
class CharTransformer(nn.Module):
    """Character ids ``(N, T)`` (or one sequence ``(T,)``) -> next-character logits ``(..., T, vocab)``."""

    def __init__(self, vocab: int, context: int, dim: int, heads: int, layers: int, seed: int):
        rng = np.random.default_rng(seed)
        self.embed = nn.Embedding(vocab, dim, init=nn.normal(0.02), rng=rng)
        self.pos = nn.PositionalEmbedding(context, dim, rng=rng)
        self.blocks = nn.Chain([Block(dim, heads, rng) for _ in range(layers)])
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Dense(dim, vocab, rng=rng)
        self._freeze()

    @property
    def context(self) -> int:
        return int(self.pos.weight.shape[0])

    def __call__(self, ids):
        return self.head(self.ln(self.blocks(self.pos(self.embed(ids)))))

    def _repr_inner(self) -> str:
        parts = [nn.base.describe(c) for c in (self.embed, self.pos, self.blocks, self.ln, self.head)]
        return f"CharTransformer({', '.join(parts)})"


def loss(model, x, y):
    """Mean cross-entropy (nats) of the next-character logits at every position."""
    return losses.logitcrossentropy(model(x), y)


# ----------------------------------------------------------------------------- data
def load_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def unigram_entropy(ids: np.ndarray, vocab: int) -> float:
    """``-sum p log p`` (nats) of the character frequencies: the loss of the best model that
    ignores context."""
    p = np.bincount(ids, minlength=vocab) / len(ids)
    p = p[p > 0]
    return float(-np.sum(p * np.log(p)))


def batch(ids: np.ndarray, size: int, context: int, rng: np.random.Generator):
    """``size`` random windows: inputs ``ids[i:i+T]`` and targets ``ids[i+1:i+T+1]``."""
    start = rng.integers(0, len(ids) - context - 1, size)
    idx = start[:, None] + np.arange(context)
    return ids[idx], ids[idx + 1]


def sample(model, prompt_ids: list, length: int, rng: np.random.Generator,
           temperature: float = 0.8) -> list:
    """Draw ``length`` characters after the prompt, each from the model's softmax."""
    ids = list(prompt_ids)
    for _ in range(length):
        logits = model(np.array(ids[-model.context:]))[-1] / temperature
        p = np.exp(logits - logits.max())
        ids.append(int(rng.choice(len(p), p=p / p.sum())))
    return ids[len(prompt_ids):]


def plot(history: dict, entropy: float, path: str, title: str) -> None:
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = np.arange(1, len(history["train"]) + 1)
    k = max(1, len(steps) // 50)  # a running mean over k steps smooths the per-batch noise
    smooth = np.convolve(history["train"], np.ones(k) / k, mode="valid")
    ax.plot(steps, history["train"], color="tab:blue", alpha=0.25, lw=0.8)
    ax.plot(steps[k - 1:], smooth, color="tab:blue", label="training (per batch, smoothed)")
    ax.plot(*zip(*history["val"]), "o-", color="tab:orange", label="validation")
    ax.axhline(entropy, color="k", ls="--", lw=1, label=f"unigram entropy {entropy:.2f}")
    ax.set(xlabel="step", ylabel="cross-entropy (nats per character)", title=title)
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1500, help="Adam steps (1500)")
    parser.add_argument("--batch", type=int, default=32, help="sequences per step (32)")
    parser.add_argument("--context", type=int, default=64, help="characters per sequence (64)")
    parser.add_argument("--dim", type=int, default=64, help="embedding width (64)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads (4)")
    parser.add_argument("--layers", type=int, default=2, help="transformer blocks (2)")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam's peak learning rate (3e-3)")
    parser.add_argument("--prompt", default="MENENIUS:\n", help="the start of the sample")
    parser.add_argument("--sample", type=int, default=300, help="characters to generate (300)")
    parser.add_argument("--text", default=TEXT, help="a UTF-8 text file (tiny shakespeare)")
    parser.add_argument("--out", default=".", help="folder for the loss plot (.)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, less output")
    parser.add_argument("--tiny", action="store_true",
                        help="a tiny model for 30 steps (what the tests run)")
    parser.add_argument("--jit", action="store_true",
                        help="stage the training step with ff.jit (about 15%% faster)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.tiny:
        args.steps, args.batch, args.context = min(args.steps, 30), 8, 16
        args.dim, args.heads, args.layers, args.sample = 16, 2, 1, 40
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    log = (lambda *a: None) if args.quiet else print
    t0 = time.perf_counter()

    # -- the data: characters -> ids, 90% to train on, 10% held out
    text = load_text(args.text)
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = np.array([index[c] for c in text], dtype=np.int64)
    split = int(0.9 * len(ids))
    train_ids, val_ids = ids[:split], ids[split:]
    entropy = unigram_entropy(train_ids, len(chars))
    print(f"{len(text):_} characters, {len(chars)} distinct; "
          f"unigram entropy {entropy:.3f} nats per character")

    model = CharTransformer(len(chars), args.context, args.dim, args.heads, args.layers,
                            args.seed)
    log(model)
    # Adam with a short warm-up and a cosine decay: a transformer's usual schedule.
    schedule = optim.warmup_cosine_decay_schedule(0.0, args.lr, max(1, args.steps // 10),
                                                  args.steps, end_value=args.lr / 10)
    state = optim.setup(optim.adamw(schedule, weight_decay=1e-2), model)
    rng = np.random.default_rng(args.seed)
    val_rng = np.random.default_rng(args.seed + 1)
    val_batches = [batch(val_ids, args.batch, args.context, val_rng) for _ in range(4)]

    def val_loss(model) -> float:
        return float(np.mean([loss(model, x, y) for x, y in val_batches]))

    # -- training: the explicit loop (ff.train does the same with per-epoch data)
    step_loss = ff.value_and_grad(loss)
    if args.jit:  # traced once, then replayed as generated straight-line NumPy code
        step_loss = ff.jit(step_loss)
    history = {"train": [], "val": [(0, val_loss(model))]}
    bar = None
    if not args.quiet:
        try:
            from tqdm.auto import tqdm
            bar = tqdm(total=args.steps, desc="training", unit="step")
        except ImportError:
            pass
    every = max(1, args.steps // 10)
    for step in range(1, args.steps + 1):
        x, y = batch(train_ids, args.batch, args.context, rng)
        value, grads = step_loss(model, x, y)
        state, model = optim.step(state, model, grads)
        history["train"].append(float(value))
        if step % every == 0 or step == args.steps:
            history["val"].append((step, val_loss(model)))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(history['train'][-20:]):.3f}",
                            val=f"{history['val'][-1][1]:.3f}")
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    final_train = float(np.mean(history["train"][-max(1, args.steps // 20):]))
    final_val = history["val"][-1][1]
    print(f"after {args.steps} steps ({seconds:.0f} s): training loss {final_train:.3f}, "
          f"validation loss {final_val:.3f} nats per character, against the unigram entropy "
          f"{entropy:.3f} ({final_val / entropy:.0%} of it)")

    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed, so no plot was written: "
              'pip install ".[examples]" (or pip install matplotlib) and run again.')
    else:
        matplotlib.use("Agg")  # a file, no window
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "char_transformer_loss.png")
        plot(history, entropy, path, f"char transformer, {args.layers} blocks of width {args.dim}")
        print(f"wrote {path}")

    prompt = [index[c] for c in args.prompt if c in index]
    generated = sample(model, prompt, args.sample, np.random.default_rng(args.seed + 2))
    print("sample:\n" + "-" * 60 + "\n" + args.prompt + "".join(chars[i] for i in generated)
          + "\n" + "-" * 60)

    # -- second section: per-example gradient norms of one batch with vmap(grad)
    # The loss is written for ONE sequence (ids of shape (T,)); vmap maps it over the batch.
    x, y = batch(train_ids, min(args.batch, 8), args.context, np.random.default_rng(args.seed + 3))
    per_example = ff.vmap(ff.grad(loss), in_axes=(None, 0, 0))(model, x, y)
    norms = np.sqrt(sum(np.sum(g.reshape(g.shape[0], -1) ** 2, axis=1)
                        for g in ff.tree.leaves(per_example)))
    one = ff.grad(loss)(model, x[1], y[1])
    diff = max(float(np.max(np.abs(a[1] - b)))
               for a, b in zip(ff.tree.leaves(per_example), ff.tree.leaves(one)))
    print(f"per-example gradient norms of {len(x)} sequences: {np.array2string(norms, precision=3)}")
    print(f"max difference from ff.grad of sequence 1 alone: {diff:.1e}")

    if args.tiny:
        if not history["train"][-1] < history["train"][0]:
            print("the loss did not fall", file=sys.stderr)
            return 1
    elif final_val > TARGET * entropy:
        print(f"validation loss {final_val:.3f} is not below {TARGET:.0%} of the unigram entropy "
              f"({TARGET * entropy:.3f})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
