#!/usr/bin/python3
"""gen_optim_fixtures.py — PyTorch reference fixtures for tests/test_optim.c.

Run with Debian's interpreter (python3-torch): /usr/bin/python3 tools/gen_optim_fixtures.py
It rewrites tests/fixtures/optim.safetensors. The output is deterministic
(torch.manual_seed), so rerunning it on the same torch version gives the same bytes;
the test only reads the committed file and never needs PyTorch.

Three parameters of odd sizes, a.W [7, 13], a.b [33] and c.s [1], start from the
same values in every case and get the same gradients at each of 3 steps: N(0, 1),
then x 0.3, then x 0.05, so a global-norm clip of 1 or 2 acts on the first two
steps and not on the third. Each case is 3 steps of

    clip_grad_value_(params, clip_value)            when clip_value > 0
    norm = clip_grad_norm_(params, clip_norm)        clip_norm <= 0: max_norm inf (no-op)
    opt.step(); sched.step()                         (torch.optim, foreach=False)

File contents (float32 tensors, metadata strings):
  w0.<p>, g1.<p> .. g3.<p>      the initial parameters and the gradients per step
  <case>.w1.<p> .. w3.<p>       the parameters after each step
  cases                         the case names, comma-separated
  params                        the parameter names, comma-separated
  <case>.config                 JSON: kind (sgd|adam|adamw), lr, momentum, beta1,
                                beta2, eps, weight_decay, clip_norm, clip_value,
                                sched (constant|step), step_size, gamma
  <case>.norm1 .. norm3         the norm clip_grad_norm_ returned (repr of a float)

Before writing, every case is recomputed in float64 from the formulas of
docs/training.md ("Optimizers"); PyTorch's float32 results must agree to 1e-5, so a
config that maps to a different PyTorch setting fails here. After writing, the file
is read back and compared.
"""

import json
import math
import os
import struct

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "optim.safetensors")
PARAMS = [("a.W", (7, 13)), ("a.b", (33,)), ("c.s", (1,))]
STEPS = 3
GSCALE = [1.0, 0.3, 0.05]

BASE = dict(kind="sgd", lr=0.1, momentum=0.0, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
            clip_norm=0.0, clip_value=0.0, sched="constant", step_size=1, gamma=1.0)
CASES = [
    ("sgd", dict()),
    ("sgd_clip", dict(clip_norm=1.0)),
    ("sgdm", dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    ("sgdm_clip", dict(lr=0.05, momentum=0.9, weight_decay=0.01, clip_norm=2.0)),
    ("sgdm_value", dict(lr=0.05, momentum=0.9, clip_value=0.5, clip_norm=2.0)),
    ("sgdm_steplr", dict(lr=0.05, momentum=0.9, clip_norm=2.0, sched="step", step_size=1, gamma=0.5)),
    ("adam", dict(kind="adam", lr=0.01)),
    ("adam_clip", dict(kind="adam", lr=0.01, weight_decay=0.01, clip_norm=1.0)),
    ("adamw", dict(kind="adamw", lr=0.01, weight_decay=0.1)),
    ("adamw_clip", dict(kind="adamw", lr=0.01, weight_decay=0.1, clip_norm=1.0, beta1=0.8, beta2=0.99)),
]


def st_write(path, tensors, meta):
    """tensors: list of (name, shape, flat float list), all F32."""
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name, shape, flat in tensors:
        blob = struct.pack("<%df" % len(flat), *flat)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def st_read(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    out = {}
    for name, h in header.items():
        b, e = h["data_offsets"]
        out[name] = (h["shape"], list(struct.unpack("<%df" % ((e - b) // 4), data[b:e])))
    return out, meta


def lr_at(c, step):
    if c["sched"] == "step":
        return c["lr"] * c["gamma"] ** (step // c["step_size"])
    return c["lr"]


def run_torch(c, w0, grads):
    ps = [torch.nn.Parameter(w.clone()) for w in w0]
    if c["kind"] == "sgd":
        opt = torch.optim.SGD(ps, lr=c["lr"], momentum=c["momentum"], weight_decay=c["weight_decay"], foreach=False)
    elif c["kind"] == "adam":
        opt = torch.optim.Adam(ps, lr=c["lr"], betas=(c["beta1"], c["beta2"]), eps=c["eps"],
                               weight_decay=c["weight_decay"], foreach=False)
    else:
        opt = torch.optim.AdamW(ps, lr=c["lr"], betas=(c["beta1"], c["beta2"]), eps=c["eps"],
                                weight_decay=c["weight_decay"], foreach=False)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=c["step_size"], gamma=c["gamma"]) \
        if c["sched"] == "step" else None
    ws, norms = [], []
    for k in range(STEPS):
        for p, g in zip(ps, grads[k]):
            p.grad = g.clone()
        if c["clip_value"] > 0:
            torch.nn.utils.clip_grad_value_(ps, c["clip_value"])
        max_norm = c["clip_norm"] if c["clip_norm"] > 0 else math.inf
        norms.append(float(torch.nn.utils.clip_grad_norm_(ps, max_norm)))
        opt.step()
        if sched:
            sched.step()
        ws.append([p.detach().clone() for p in ps])
    return ws, norms


def run_f64(c, w0, grads):
    """The documented formulas in float64, independent of torch.optim."""
    w = [x.double() for x in w0]
    s1 = [torch.zeros_like(x) for x in w]
    s2 = [torch.zeros_like(x) for x in w]
    ws, norms = [], []
    for k in range(STEPS):
        g = [x.double() for x in grads[k]]
        if c["clip_value"] > 0:
            g = [x.clamp(-c["clip_value"], c["clip_value"]) for x in g]
        norm = math.sqrt(sum(float((x * x).sum()) for x in g))
        norms.append(norm)
        scale = min(1.0, c["clip_norm"] / (norm + 1e-6)) if c["clip_norm"] > 0 else 1.0
        g = [x * scale for x in g]
        lr = lr_at(c, k)
        for i in range(len(w)):
            if c["kind"] == "sgd":
                d = g[i] + c["weight_decay"] * w[i]
                if c["momentum"] != 0:
                    s1[i] = d.clone() if k == 0 else s1[i] * c["momentum"] + d
                    d = s1[i]
                w[i] = w[i] - lr * d
            else:
                d = g[i]
                if c["kind"] == "adamw":
                    w[i] = w[i] * (1 - lr * c["weight_decay"])
                else:
                    d = d + c["weight_decay"] * w[i]
                s1[i] = s1[i] * c["beta1"] + (1 - c["beta1"]) * d
                s2[i] = s2[i] * c["beta2"] + (1 - c["beta2"]) * d * d
                bc1 = 1 - c["beta1"] ** (k + 1)
                bc2 = 1 - c["beta2"] ** (k + 1)
                w[i] = w[i] - (lr / bc1) * s1[i] / (s2[i].sqrt() / math.sqrt(bc2) + c["eps"])
        ws.append([x.clone() for x in w])
    return ws, norms


def main():
    torch.manual_seed(20261127)
    w0 = [torch.randn(shape) for _, shape in PARAMS]
    grads = [[torch.randn(shape) * s for _, shape in PARAMS] for s in GSCALE]
    tensors = [("w0." + n, shape, w.flatten().tolist()) for (n, shape), w in zip(PARAMS, w0)]
    for k in range(STEPS):
        tensors += [("g%d.%s" % (k + 1, n), shape, g.flatten().tolist()) for (n, shape), g in zip(PARAMS, grads[k])]
    meta = {"cases": ",".join(name for name, _ in CASES), "params": ",".join(n for n, _ in PARAMS),
            "generator": "tools/gen_optim_fixtures.py, torch %s" % torch.__version__}
    for name, over in CASES:
        c = dict(BASE, **over)
        ws, norms = run_torch(c, w0, grads)
        rws, rnorms = run_f64(c, w0, grads)
        for k in range(STEPS):
            assert abs(norms[k] - rnorms[k]) <= 1e-5 * rnorms[k], (name, k, norms[k], rnorms[k])
            for (pn, _), a, b in zip(PARAMS, ws[k], rws[k]):
                err = float((a.double() - b).abs().max())
                assert err <= 1e-5, (name, k, pn, err)
        clipped = [c["clip_norm"] > 0 and n > c["clip_norm"] for n in norms]
        print("%-12s norms %s clipped %s" % (name, " ".join("%.4f" % n for n in norms), clipped))
        meta[name + ".config"] = json.dumps(c, sort_keys=True)
        for k in range(STEPS):
            meta["%s.norm%d" % (name, k + 1)] = repr(norms[k])
            tensors += [("%s.w%d.%s" % (name, k + 1, n), shape, w.flatten().tolist())
                        for (n, shape), w in zip(PARAMS, ws[k])]
    st_write(OUT, tensors, meta)
    got, gmeta = st_read(OUT)
    assert gmeta == meta
    for name, shape, flat in tensors:
        assert got[name][0] == list(shape) and struct.pack("<%df" % len(flat), *got[name][1]) == \
            struct.pack("<%df" % len(flat), *flat), name
    print("wrote %s: %d tensors, %d bytes" % (os.path.relpath(OUT), len(tensors), os.path.getsize(OUT)))


if __name__ == "__main__":
    main()
