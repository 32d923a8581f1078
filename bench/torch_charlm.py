#!/usr/bin/python3
"""PyTorch side of the time-to-quality benchmark (bench/quality.sh, bench/README.md):
examples/charlm.rnn as PyTorch modules, trained on the same text, the same way
`rnnc train` trains it, for the same wall-clock budget, then evaluated on the
whole validation text as `rnnc train` evaluates it.

The model (time major, [T, B, ...]): nn.Embedding(V, E) -> nn.LSTM(E, H,
num_layers=2) -> nn.Linear(H, V) -> cross_entropy (mean over the chunk),
PyTorch's default initialization (rnnc_init_params draws from the same
distributions), torch.manual_seed(seed).

Data, as rnnc's batcher lays out a stream (runtime/batch.c, docs/training.md
"Data") with --no-shuffle: the text's characters are ids into the sorted
distinct characters of the training text (rnnc's character vocabulary);
nbatch = (nids - 1) // B // T chunks per epoch, L = nbatch * T; part b is
ids[b*L : b*L + L] and chunk k is steps k*T .. k*T+T-1 of every part, targets
the next ids. The LSTM state is carried from chunk to chunk (truncated BPTT:
detached between chunks) and reset to zeros at chunk 0 of every epoch.

A step: zero_grad(set_to_none), forward, loss, backward,
clip_grad_norm_(params, clip), Adam(lr, betas (0.9, 0.999), eps 1e-8).
The loop stops at the first step boundary at or after --time seconds of
training (rnnc train --time does the same). Then the validation text is run
through the same batcher (B parts, T steps, state carried, reset at chunk 0;
the tail of fewer than B*T tokens left out, as rnnc does) under no_grad:
valid_loss = sum(chunk loss * chunk targets) / targets, bits per character
= valid_loss / ln 2.

Threads: torch.set_num_threads(n); Debian's torch 1.13 calls OpenBLAS's sgemm,
whose pool reads OPENBLAS_NUM_THREADS when it loads, so the script re-executes
itself with OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = n and
OMP_WAIT_POLICY=PASSIVE unless they are set so already (bench/run.sh's settings).

Usage:
  /usr/bin/python3 bench/torch_charlm.py split CORPUS TRAIN VALID [--frac 0.05]
      the last --frac of CORPUS's characters is the validation text, with any
      character the training part lacks left out (and counted): both tools
      then read the same two files
  /usr/bin/python3 bench/torch_charlm.py train --train TRAIN --valid VALID
      [--threads 2] [--time 120] [--batch 32] [--seq 64] [--lr 0.002]
      [--clip 5] [--dim E=64] [--dim H=256] [--seed 1] [--metrics FILE]
      [--log-every 50]
  /usr/bin/python3 bench/torch_charlm.py check --train TRAIN --valid VALID
      --params RNNC_CHECKPOINT [--batch 32] [--seq 64] [--dim ...]
      loads rnnc's trained parameters into the PyTorch model and evaluates the
      validation text: it must give rnnc's own validation loss (same
      vocabulary, same layout, same evaluation)
train and check print one JSON line on stdout.
"""
import argparse
import json
import math
import os
import struct
import sys
import time


def read_text(path):
    """A file's text, strict UTF-8, no newline translation (rnnc reads bytes)."""
    with open(path, "rb") as f:
        return f.read().decode("utf-8")


def write_text(path, text):
    with open(path, "wb") as f:
        f.write(text.encode("utf-8"))


def cmd_split(a):
    text = read_text(a.corpus)
    nv = int(len(text) * a.frac)
    if nv < 2 or len(text) - nv < 2:
        sys.exit(f"torch_charlm.py: cannot split {len(text)} characters with fraction {a.frac}")
    train, valid = text[:len(text) - nv], text[len(text) - nv:]
    chars = set(train)
    kept = "".join(c for c in valid if c in chars)
    write_text(a.train, train)
    write_text(a.valid, kept)
    print(json.dumps(dict(corpus_chars=len(text), train_chars=len(train), valid_chars=len(kept),
                          valid_dropped=len(valid) - len(kept), vocab=len(chars))))


def dims(a):
    d = dict(E=64, H=256)
    for s in a.dim or []:
        k, _, v = s.partition("=")
        if k not in d or not v.isdigit():
            sys.exit(f"torch_charlm.py: --dim wants E=N or H=N, not '{s}'")
        d[k] = int(v)
    return d


def threads_env(n):
    """Re-execute with PyTorch's thread settings in the environment (see the docstring)."""
    want = dict(OMP_NUM_THREADS=str(n), OPENBLAS_NUM_THREADS=str(n), OMP_WAIT_POLICY="PASSIVE")
    if all(os.environ.get(k) == v for k, v in want.items()):
        return
    os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, **want))


class Data:
    """The vocabulary of the training text and both texts as id tensors."""

    def __init__(self, torch, train_path, valid_path):
        train, valid = read_text(train_path), read_text(valid_path)
        self.chars = sorted(set(train))
        index = {c: i for i, c in enumerate(self.chars)}
        bad = [c for c in set(valid) if c not in index]
        if bad:
            sys.exit(f"torch_charlm.py: {valid_path} has characters the training text lacks "
                     f"(e.g. U+{ord(bad[0]):04X}); make the files with 'split'")
        self.V = len(self.chars)
        self.train = torch.tensor([index[c] for c in train], dtype=torch.long)
        self.valid = torch.tensor([index[c] for c in valid], dtype=torch.long)


def stream(ids, B, T):
    """rnnc's stream batcher without shuffling: (x, y) [L, B] and nbatch."""
    nbatch = (len(ids) - 1) // B // T
    if nbatch < 1:
        sys.exit(f"torch_charlm.py: {len(ids)} tokens, fewer than B*T+1 = {B * T + 1}")
    L = nbatch * T
    x = ids[:B * L].view(B, L).t().contiguous()
    y = ids[1:B * L + 1].view(B, L).t().contiguous()
    return x, y, nbatch


def build(torch, V, E, H):
    import torch.nn as nn

    class CharLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(V, E)
            self.lstm = nn.LSTM(E, H, num_layers=2)
            self.out = nn.Linear(H, V)

        def forward(self, x, state):
            y, state = self.lstm(self.emb(x), state)
            return self.out(y), state

    return CharLM()


def evaluate(torch, F, model, ids, B, T):
    """Mean cross-entropy over the stream's B*L targets, state carried (rnnc's evaluate)."""
    x, y, nbatch = stream(ids, B, T)
    model.eval()
    total, n, state = 0.0, 0, None
    with torch.no_grad():
        for k in range(nbatch):
            logits, state = model(x[k * T:(k + 1) * T], state)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[k * T:(k + 1) * T].reshape(-1))
            total += float(loss) * B * T
            n += B * T
    model.train()
    return total / n, n


def setup(a):
    threads_env(a.threads)
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    d = dims(a)
    data = Data(torch, a.train, a.valid)
    model = build(torch, data.V, d["E"], d["H"])
    return torch, F, d, data, model


def cmd_train(a):
    torch, F, d, data, model = setup(a)
    B, T = a.batch, a.seq
    x, y, nbatch = stream(data.train, B, T)
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    metrics = open(a.metrics, "w") if a.metrics else None
    step, state, loss = 0, None, float("nan")
    t0 = time.perf_counter()
    elapsed = 0.0
    while elapsed < a.time:
        k = step % nbatch
        if k == 0:
            state = None                     # chunk 0 of an epoch: zero state
        opt.zero_grad(set_to_none=True)
        logits, state = model(x[k * T:(k + 1) * T], state)
        lossv = F.cross_entropy(logits.reshape(-1, data.V), y[k * T:(k + 1) * T].reshape(-1))
        lossv.backward()
        torch.nn.utils.clip_grad_norm_(params, a.clip)
        opt.step()
        state = tuple(s.detach() for s in state)
        step += 1
        loss = float(lossv)
        elapsed = time.perf_counter() - t0
        if metrics and step % a.log_every == 0:
            metrics.write(json.dumps(dict(step=step, epoch=(step - 1) // nbatch + 1, loss=loss,
                                          time_s=elapsed)) + "\n")
    t1 = time.perf_counter()
    vloss, n = evaluate(torch, F, model, data.valid, B, T)
    te = time.perf_counter() - t1
    res = dict(engine="pytorch", torch_version=torch.__version__, threads=a.threads,
               torch_get_num_threads=torch.get_num_threads(), V=data.V, **d, B=B, T=T, lr=a.lr,
               clip=a.clip, budget_s=a.time, steps=step, nbatch=nbatch, epochs=step / nbatch, train_s=round(elapsed, 3),
               tokens_per_s=round(step * B * T / elapsed, 1), last_train_loss=loss,
               valid_loss=vloss, valid_bpc=vloss / math.log(2), valid_targets=n, eval_s=round(te, 3))
    if metrics:
        metrics.write(json.dumps(dict(step=step, valid_loss=vloss, valid_bpc=vloss / math.log(2),
                                      time_s=elapsed)) + "\n")
        metrics.close()
    print(json.dumps(res), flush=True)


def read_safetensors(torch, path):
    """The F32 tensors of a safetensors file, by name."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        blob = f.read()
    out = {}
    for name, h in head.items():
        if name == "__metadata__" or h["dtype"] != "F32":
            continue
        lo, hi = h["data_offsets"]
        t = torch.frombuffer(bytearray(blob[lo:hi]), dtype=torch.float32)
        out[name] = t.view(h["shape"]) if h["shape"] else t
    return out


def cmd_check(a):
    torch, F, d, data, model = setup(a)
    p = read_safetensors(torch, a.params)
    names = {"emb.weight": "x.weight", "out.weight": "loss.weight", "out.bias": "loss.bias"}
    for l, node in ((0, "h1"), (1, "h2")):
        for tw, rw in (("weight_ih", "W_ih"), ("weight_hh", "W_hh"), ("bias_ih", "b_ih"), ("bias_hh", "b_hh")):
            names[f"lstm.{tw}_l{l}"] = f"{node}.{rw}"
    sd = model.state_dict()
    with torch.no_grad():
        for tn, rn in names.items():
            if rn not in p:
                sys.exit(f"torch_charlm.py: {a.params} has no '{rn}'")
            if tuple(p[rn].shape) != tuple(sd[tn].shape):
                sys.exit(f"torch_charlm.py: '{rn}' is {list(p[rn].shape)}, PyTorch's {tn} "
                         f"{list(sd[tn].shape)} (vocabulary {data.V})")
            sd[tn].copy_(p[rn])
    vloss, n = evaluate(torch, F, model, data.valid, a.batch, a.seq)
    print(json.dumps(dict(V=data.V, valid_loss=vloss, valid_bpc=vloss / math.log(2), valid_targets=n)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split")
    s.add_argument("corpus")
    s.add_argument("train")
    s.add_argument("valid")
    s.add_argument("--frac", type=float, default=0.05)
    for name in ("train", "check"):
        t = sub.add_parser(name)
        t.add_argument("--train", required=True)
        t.add_argument("--valid", required=True)
        t.add_argument("--threads", type=int, default=2)
        t.add_argument("--batch", type=int, default=32)
        t.add_argument("--seq", type=int, default=64)
        t.add_argument("--dim", action="append")
        t.add_argument("--seed", type=int, default=1)
        if name == "train":
            t.add_argument("--time", type=float, default=120)
            t.add_argument("--lr", type=float, default=0.002)
            t.add_argument("--clip", type=float, default=5.0)
            t.add_argument("--metrics")
            t.add_argument("--log-every", type=int, default=50)
        else:
            t.add_argument("--params", required=True)
    a = ap.parse_args()
    {"split": cmd_split, "train": cmd_train, "check": cmd_check}[a.cmd](a)


if __name__ == "__main__":
    main()
