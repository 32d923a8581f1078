#!/usr/bin/python3
"""PyTorch side of rnnc's benchmark (bench/README.md): the configurations of
DESIGN.md (C1-C6) and the MGU custom-cell row, the same models and sizes as
bench/models/*.rnn, timed the way bench/rnnc_bench.c times rnnc.

Models (time-major, [T, B, ...]):
  C1-C4  nn.Embedding -> nn.LSTM / nn.GRU / nn.RNN(tanh) (num_layers L)
         -> nn.Linear(H, V) -> cross_entropy (mean)
  C5     nn.LSTM(1024, 1024) on float features x (requires_grad, as rnnc
         computes grad.x too), loss = output.sum()
  C6     C2's modules on one token, B = 1, state carried, softmax: per token
  MGU    C3's network with the minimal gated unit written as a Python loop of
         torch ops (class MGULayer): what a PyTorch user writes for a custom
         cell. Its input projections are hoisted by hand (one GEMM over all
         T*B rows), the best such a user can do without writing a kernel.

Timed (medians over at least --steps runs and --min-time seconds, after
--warmup runs):
  train  zero_grad(set_to_none), forward, loss, backward,
         clip_grad_norm_(params, 5.0), SGD step (lr 0.01)
  fwd    forward + loss under torch.no_grad(), model.eval()
  gen    (C6) one token: embedding, one step of both layers, linear, softmax

FLOPs (matmuls only; G = gates: LSTM 4, GRU 3, RNN 1, MGU 2):
  fwd   = T * ( sum_l 2*B*G*H*(I_l + H)  +  2*B*H*V )   (I_1 = E, I_l = H; C5: no V term)
  train = 3 * fwd   (backward = 2x the forward matmuls: input and weight gradients)

Memory: one fresh process per configuration. rss_base_mib is the resident set
after `import torch` and before the model is built; just before the timed
training runs (C6: generation runs) the heap's free pages go back to the OS
(malloc_trim, as rnnc_bench does), rss_run_start_mib is read and the
high-water mark (VmHWM) is reset (/proc/self/clear_refs), so run_peak_mib is the largest resident set during them
and run_peak_delta_mib = run_peak_mib - rss_base_mib what the model, its
gradients, activations and the optimizer took. peak_mib: ru_maxrss over the
whole process.

Threads: torch.set_num_threads(n) reaches only ATen's OpenMP pool; Debian's
torch 1.13 calls OpenBLAS sgemm_, which reads OPENBLAS_NUM_THREADS when it
loads. So each configuration runs in a child process started with
OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = n and OMP_WAIT_POLICY=PASSIVE
(PyTorch's fastest settings here; without them 2 threads ran slower than 1).

Usage: /usr/bin/python3 bench/torch_bench.py [--threads 2] [--configs C1,C2,...]
         [--steps 10] [--warmup 2] [--min-time 1.0] [--gen-steps 300] [--out FILE]
Prints one JSON line per configuration on stdout (and writes them, as a JSON
list, to --out).
"""
import argparse
import ctypes
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {
    "C1": dict(name="charlm-small", cell="LSTM", V=65, E=64, H=128, L=1, B=32, T=64),
    "C2": dict(name="charlm-medium", cell="LSTM", V=256, E=128, H=512, L=2, B=64, T=64),
    "C3": dict(name="gru-medium", cell="GRU", V=256, E=128, H=512, L=2, B=64, T=64),
    "MGU": dict(name="mgu-medium (custom cell)", cell="MGU", V=256, E=128, H=512, L=2, B=64, T=64),
    "C4": dict(name="rnn-medium", cell="RNN", V=256, E=128, H=512, L=2, B=64, T=64),
    "C5": dict(name="deepbench-lstm", cell="LSTM", V=None, E=1024, H=1024, L=1, B=32, T=25,
               cell_only=True),
    "C6": dict(name="generation", cell="LSTM", V=256, E=128, H=512, L=2, B=1, T=1, gen_only=True),
    # --quick: a tiny C1, the same one rnnc_bench --quick runs
    "quick": dict(name="tiny charlm (quick)", cell="LSTM", V=65, E=8, H=16, L=1, B=4, T=8),
}
ORDER = ["C1", "C2", "C3", "MGU", "C4", "C5", "C6"]
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1, "MGU": 2}


def fwd_flops(c):
    """Matmul FLOPs of one forward pass (see the module docstring)."""
    g, H, B, T = GATES[c["cell"]], c["H"], c["B"], c["T"]
    f = 0
    for layer in range(c["L"]):
        i = c["E"] if layer == 0 else H
        f += 2 * B * g * H * (i + H)
    if not c.get("cell_only"):
        f += 2 * B * H * c["V"]
    return T * f


def rss_mib():
    """The current resident set, MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def hwm_mib():
    """The resident set's high-water mark (VmHWM), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def reset_hwm():
    """Give the heap's free pages back to the OS (malloc_trim, as rnnc_bench
    does), then reset VmHWM to the resident set; False where the kernel refuses."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def summarize(times_s, flops, tokens):
    med = statistics.median(times_s)
    return dict(n=len(times_s), ms_median=round(med * 1e3, 4), ms_min=round(min(times_s) * 1e3, 4),
                tokens_per_s=round(tokens / med, 1), gflops=round(flops / med / 1e9, 3),
                gflop_per_step=round(flops / 1e9, 5))


def timed(fn, steps, warmup, min_time):
    """Run fn warmup times, then at least steps times and min_time seconds; the times (s)."""
    for _ in range(warmup):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < steps or (time.perf_counter() - start < min_time and len(times) < 1000):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def build(c):
    """The model of configuration c (torch imported here: only in the child)."""
    import torch
    import torch.nn as nn

    class MGULayer(nn.Module):
        """The minimal gated unit of bench/models/mgu_medium.rnn, one layer, [T, B, I] -> [T, B, H]:
        f = sigmoid(W_f x + U_f h + b_f); n = tanh(W_h x + U_h (f*h) + b_h); h' = (1-f) h + f n."""

        def __init__(self, I, H):
            super().__init__()
            self.H = H
            self.W = nn.Linear(I, 2 * H)            # [W_f; W_h] and [b_f; b_h]
            self.U_f = nn.Linear(H, H, bias=False)
            self.U_h = nn.Linear(H, H, bias=False)

        def forward(self, x):
            T, B = x.shape[0], x.shape[1]
            xf, xh = self.W(x).chunk(2, dim=-1)     # hoisted: one GEMM over T*B rows
            h = x.new_zeros(B, self.H)
            outs = []
            for t in range(T):
                f = torch.sigmoid(xf[t] + self.U_f(h))
                n = torch.tanh(xh[t] + self.U_h(f * h))
                h = (1 - f) * h + f * n
                outs.append(h)
            return torch.stack(outs), h

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell_only = c.get("cell_only", False)
            if not self.cell_only:
                self.emb = nn.Embedding(c["V"], c["E"])
                self.out = nn.Linear(c["H"], c["V"])
            if c["cell"] == "MGU":
                self.rnn = nn.ModuleList(MGULayer(c["E"] if l == 0 else c["H"], c["H"])
                                         for l in range(c["L"]))
            else:
                cls = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN": nn.RNN}[c["cell"]]
                kw = dict(nonlinearity="tanh") if c["cell"] == "RNN" else {}
                self.rnn = cls(c["E"], c["H"], num_layers=c["L"], **kw)

        def cells(self, x, state):
            if c["cell"] == "MGU":
                for layer in self.rnn:
                    x, _ = layer(x)
                return x, None
            return self.rnn(x, state)

        def forward(self, x, state=None):
            if self.cell_only:
                return self.cells(x, state)
            y, st = self.cells(self.emb(x), state)
            return self.out(y), st

    return torch, Net()


def run_one(key, a):
    """Benchmark configuration key in this process; its JSON object."""
    c = CONFIGS[key]
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    base = rss_mib()
    torch, model = build(c)
    entry = dict(config=key, engine="pytorch", **c, threads=a.threads, torch_version=torch.__version__,
                 torch_get_num_threads=torch.get_num_threads(),
                 env={k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                     "OMP_WAIT_POLICY")},
                 rss_base_mib=round(base, 1))
    ff = fwd_flops(c)
    tokens = c["B"] * c["T"]
    gen = torch.Generator().manual_seed(0)
    if c.get("cell_only"):
        x = torch.randn(c["T"], c["B"], c["E"], generator=gen, requires_grad=True)
        tgt = None
    else:
        x = torch.randint(0, c["V"], (c["T"], c["B"]), generator=gen)
        tgt = torch.randint(0, c["V"], (c["T"], c["B"]), generator=gen)

    def loss_of(out):
        if c.get("cell_only"):
            return out.sum()
        return F.cross_entropy(out.reshape(-1, c["V"]), tgt.reshape(-1))

    if c.get("gen_only"):
        model.eval()
        L, H = c["L"], c["H"]
        st = [(torch.zeros(L, 1, H), torch.zeros(L, 1, H))]
        tok = torch.zeros(1, 1, dtype=torch.long)

        def step():
            with torch.no_grad():
                logits, st[0] = model(tok, st[0])
                return torch.softmax(logits[0, 0], dim=-1)

        reset = reset_hwm()
        entry["rss_run_start_mib"] = round(rss_mib(), 1)
        t = timed(step, a.gen_steps, 20, 0.0)
        entry["gen"] = summarize(t, ff, 1)
        entry["gen"]["us_median"] = round(statistics.median(t) * 1e6, 2)
        peak = hwm_mib() if reset else None
    else:
        params = list(model.parameters())
        opt = torch.optim.SGD(params, lr=0.01)
        model.train()

        def train():
            opt.zero_grad(set_to_none=True)
            out, _ = model(x)
            loss = loss_of(out)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()

        reset = reset_hwm()
        entry["rss_run_start_mib"] = round(rss_mib(), 1)
        entry["train"] = summarize(timed(train, a.steps, a.warmup, a.min_time), 3 * ff, tokens)
        peak = hwm_mib() if reset else None
        model.eval()
        xf = x.detach()

        def fwd():
            with torch.no_grad():
                out, _ = model(xf)
                float(loss_of(out))

        entry["fwd"] = summarize(timed(fwd, a.steps, a.warmup, a.min_time), ff, tokens)
    # the training (C6: generation) runs' high-water mark, and above the base
    entry["run_peak_mib"] = round(peak, 1) if peak is not None else None
    entry["run_peak_delta_mib"] = round(peak - base, 1) if peak is not None else None
    entry["peak_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return entry


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", default=",".join(ORDER))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--gen-steps", type=int, default=300)
    ap.add_argument("--out", default=None)
    ap.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    keys = a.configs.split(",")
    for k in keys:
        if k not in CONFIGS:
            sys.exit(f"torch_bench.py: unknown configuration '{k}' (known: {', '.join(CONFIGS)})")
    if a.single:
        print(json.dumps(run_one(keys[0], a)), flush=True)
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads),
               OMP_WAIT_POLICY="PASSIVE")
    results = []
    for k in keys:
        cmd = [sys.executable, os.path.abspath(__file__), "--single", "--configs", k,
               "--threads", str(a.threads), "--steps", str(a.steps), "--warmup", str(a.warmup),
               "--min-time", str(a.min_time), "--gen-steps", str(a.gen_steps)]
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
        if p.returncode != 0:
            sys.exit(f"torch_bench.py: configuration {k} failed (exit {p.returncode})")
        line = p.stdout.strip().splitlines()[-1]
        results.append(json.loads(line))
        print(line, flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(dict(python=platform.python_version(), results=results), f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
