#!/usr/bin/python3
"""The PyTorch peer of epmoe's layer bench: Hugging Face's MixtralSparseMoeBlock forward, written here in
torch (transformers is not a Debian package), on the same weights and tokens epmoe runs, in FP32 and BF16.

    peer_torch.py make DIR --d-model 1024 --d-ff 3584 --experts 8 --top-k 2 --tokens 4096,128
                  --steps 21 --workloads uniform,skewed,drift --workload-tokens 4096
        writes DIR/model (a one-layer Mixtral checkpoint: config.json + model.safetensors, F32),
        DIR/input_<T>.safetensors (hidden_states [T, d_model], the same tokens every step),
        DIR/expected_<T>.safetensors (h + block(RMSNorm(h)) in float64, for the check; --expected counts),
        and DIR/<workload>_<T>.safetensors (for --workload-tokens, default all): hidden_states
        [S, T, d_model], S = --steps, a fresh batch every step, so the
        routing changes every step (uniform: N(0, 1) tokens; skewed: 32 cluster centres drawn with Zipf(1.2)
        popularity plus N(0, 0.5) noise, as epmoe's synthetic workload; drift: skewed with the popularity
        moved by one cluster a step)
    peer_torch.py search DIR --tokens 4096 --dtype fp32 --workload uniform --reps 3
        runs `time` in a fresh process for every setting of the thread pools torch uses here
        (OPENBLAS_NUM_THREADS: Debian's torch does its FP32 matmuls in the system OpenBLAS; torch's own
        intra-op threads; OMP_WAIT_POLICY passive or unset), each on --reps steps after a warm-up; prints
        one JSON line with every setting's tokens/s and the best
    peer_torch.py time DIR --tokens 4096 --dtype bf16 --workload fixed,skewed --threads 2 --reps 20
        times the block (the HF code path: router, softmax, topk, renormalise, one_hot expert mask,
        per-expert index_add_) on --reps steps of each workload (step i runs batch i mod S; `fixed` runs
        input_<T> every step) after a warm-up on the last batch; prints one JSON line with per-step seconds
        and tokens/s
    peer_torch.py check DIR --tokens 4096 --output FILE
        relative L2 of epmoe's --dump-output hidden_states against DIR/expected_<T>; one JSON line

Needs Debian's python3-torch.
"""
import argparse
import itertools
import json
import os
import statistics
import struct
import subprocess
import sys
import time
import zlib

import torch
import torch.nn.functional as F

CODES = {torch.float32: "F32", torch.float64: "F64", torch.int32: "I32", torch.int64: "I64"}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def write_safetensors(path, tensors):
    header, offset = {}, 0
    for name in sorted(tensors):
        n = tensors[name].numel() * tensors[name].element_size()
        header[name] = {"dtype": CODES[tensors[name].dtype], "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for name in sorted(tensors):
            f.write(tensors[name].contiguous().numpy().tobytes())


def read_tensor(path, name):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        meta = header[name]
        start, end = meta["data_offsets"]
        f.seek(8 + n + start)
        data = bytearray(f.read(end - start))
    dtype = {"F32": torch.float32, "F64": torch.float64, "I32": torch.int32, "I64": torch.int64}[meta["dtype"]]
    return torch.frombuffer(data, dtype=dtype).reshape(meta["shape"])


class Expert(torch.nn.Module):
    """MixtralBlockSparseTop2MLP: w2(silu(w1(x)) * w3(x))."""

    def __init__(self, d_model, d_ff):
        super().__init__()
        self.w1 = torch.nn.Linear(d_model, d_ff, bias=False)
        self.w2 = torch.nn.Linear(d_ff, d_model, bias=False)
        self.w3 = torch.nn.Linear(d_model, d_ff, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class SparseMoeBlock(torch.nn.Module):
    """MixtralSparseMoeBlock.forward, as Hugging Face computes it."""

    def __init__(self, d_model, d_ff, num_experts, top_k):
        super().__init__()
        self.top_k, self.num_experts = top_k, num_experts
        self.gate = torch.nn.Linear(d_model, num_experts, bias=False)
        self.experts = torch.nn.ModuleList(Expert(d_model, d_ff) for _ in range(num_experts))

    def forward(self, hidden):
        router_logits = self.gate(hidden)
        self.router_logits = router_logits  # [T, E]: kept for the load-balancing loss (peer_train.py)
        routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
        routing_weights, selected = torch.topk(routing_weights, self.top_k, dim=-1)
        routing_weights /= routing_weights.sum(dim=-1, keepdim=True)
        routing_weights = routing_weights.to(hidden.dtype)
        final = torch.zeros_like(hidden)
        expert_mask = F.one_hot(selected, num_classes=self.num_experts).permute(2, 1, 0)
        for e in range(self.num_experts):
            idx, top_x = torch.where(expert_mask[e])
            if top_x.numel() == 0:
                continue
            current = self.experts[e](hidden[top_x]) * routing_weights[top_x, idx, None]
            final.index_add_(0, top_x, current.to(hidden.dtype))
        return final


def load_block(model_dir):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    block = SparseMoeBlock(cfg["hidden_size"], cfg["intermediate_size"], cfg["num_local_experts"],
                           cfg["num_experts_per_tok"])
    path = os.path.join(model_dir, "model.safetensors")
    prefix = "model.layers.0.block_sparse_moe."
    with torch.no_grad():
        block.gate.weight.copy_(read_tensor(path, prefix + "gate.weight"))
        for e, expert in enumerate(block.experts):
            for w in ("w1", "w2", "w3"):
                getattr(expert, w).weight.copy_(read_tensor(path, f"{prefix}experts.{e}.{w}.weight"))
    norm = read_tensor(path, "model.layers.0.post_attention_layernorm.weight")
    return block.eval(), norm, cfg


def rms_norm(x, weight, eps):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def workload_steps(kind, steps, tokens, d, gen, clusters=32, skew=1.2, noise=0.5):
    """[steps, tokens, d] F32: a fresh batch every step (see the module doc)."""
    if kind == "uniform":
        return torch.randn(steps, tokens, d, generator=gen)
    centres = torch.randn(clusters, d, generator=gen)
    popularity = torch.arange(1, clusters + 1, dtype=torch.float64).pow(-skew)
    out = torch.empty(steps, tokens, d)
    for s in range(steps):
        ranks = torch.multinomial(popularity, tokens, replacement=True, generator=gen)
        cluster = (ranks + (s if kind == "drift" else 0)) % clusters
        out[s] = centres[cluster] + noise * torch.randn(tokens, d, generator=gen)
    return out


def make(args):
    torch.manual_seed(0)
    d, f, e = args.d_model, args.d_ff, args.experts
    model_dir = os.path.join(args.dir, "model")
    os.makedirs(model_dir, exist_ok=True)
    tensors = {"model.layers.0.post_attention_layernorm.weight": 1.0 + 0.1 * torch.randn(d),
               "model.layers.0.block_sparse_moe.gate.weight": torch.randn(e, d) * (2.0 / d ** 0.5)}
    for i in range(e):
        for name, shape, fan_in in (("w1", (f, d), d), ("w3", (f, d), d), ("w2", (d, f), f)):
            tensors[f"model.layers.0.block_sparse_moe.experts.{i}.{name}.weight"] = torch.randn(shape) / fan_in ** 0.5
    write_safetensors(os.path.join(model_dir, "model.safetensors"), tensors)
    cfg = {"model_type": "mixtral", "architectures": ["MixtralForCausalLM"], "hidden_size": d,
           "intermediate_size": f, "num_hidden_layers": 1, "num_local_experts": e, "num_experts_per_tok": args.top_k,
           "rms_norm_eps": 1e-5}
    json.dump(cfg, open(os.path.join(model_dir, "config.json"), "w"), indent=1)
    block, norm, cfg = load_block(model_dir)
    block64 = block.double()
    for t in args.tokens:
        h = torch.randn(t, d)
        write_safetensors(os.path.join(args.dir, f"input_{t}.safetensors"), {"hidden_states": h})
        if t in args.expected:
            with torch.no_grad():
                h64 = h.double()
                out = h64 + block64(rms_norm(h64, norm.double(), cfg["rms_norm_eps"]))
            write_safetensors(os.path.join(args.dir, f"expected_{t}.safetensors"), {"hidden_states": out})
        for kind in args.workloads if t in args.workload_tokens else []:
            gen = torch.Generator().manual_seed(zlib.crc32(f"{kind}/{t}".encode()))
            write_safetensors(os.path.join(args.dir, f"{kind}_{t}.safetensors"),
                              {"hidden_states": workload_steps(kind, args.steps, t, d, gen)})


def load_batches(folder, workload, t, norm, eps, dtype):
    """The normalised batches of the workload (a list, one per distinct step), in the timed dtype."""
    name = f"input_{t}" if workload == "fixed" else f"{workload}_{t}"
    h = read_tensor(os.path.join(folder, name + ".safetensors"), "hidden_states")
    h = h.reshape(-1, t, h.shape[-1])
    return [rms_norm(h[s], norm, eps).to(dtype) for s in range(h.shape[0])]


def time_block(args):
    torch.set_num_threads(args.threads)
    dtype = DTYPES[args.dtype]
    block, norm, cfg = load_block(os.path.join(args.dir, "model"))
    block = block.to(dtype)
    out = {"bench": "torch_peer", "torch": torch.__version__, "dtype": args.dtype,
           "block": "MixtralSparseMoeBlock (HF code path)", "torch_threads": torch.get_num_threads(),
           "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "points": []}
    for workload, t in itertools.product(args.workload, args.tokens):
        batches = load_batches(args.dir, workload, t, norm, cfg["rms_norm_eps"], dtype)
        seconds = []
        with torch.inference_mode():
            block(batches[-1])  # warm-up on the last batch: the timed steps reach it only if reps >= batches
            for step in range(args.reps):
                x = batches[step % len(batches)]
                t0 = time.perf_counter()
                block(x)
                seconds.append(time.perf_counter() - t0)
        tps = sorted(t / s for s in seconds)
        out["points"].append({"workload": workload, "tokens": t, "steps": args.reps, "distinct_batches": len(batches),
                              "step_s": seconds,
                              "tokens_per_s": {"median": statistics.median(tps), "min": tps[0], "max": tps[-1]}})
    print(json.dumps(out))


def thread_settings(blas_counts=None, torch_counts=None):
    """(OPENBLAS_NUM_THREADS, torch threads, OMP_WAIT_POLICY or None) for every setting a search tries; counts
    default to 1, cores/2 (from 4 cores) and cores."""
    cores = os.cpu_count() or 1
    counts = sorted({1, cores} | ({cores // 2} if cores >= 4 else set()))
    return list(itertools.product(blas_counts or counts, torch_counts or counts, ("PASSIVE", None)))


def run_fresh(cmd, blas, threads, wait):
    """Runs cmd (a JSON-printing `time` command) in a fresh process with the thread setting; its JSON.
    Fresh, because OpenBLAS reads its variable once, when it loads."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(blas), OMP_NUM_THREADS=str(threads))
    env.pop("OMP_WAIT_POLICY", None)
    if wait:
        env["OMP_WAIT_POLICY"] = wait
    return json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)


def setting_of(blas, threads, wait):
    return {"openblas_num_threads": blas, "torch_threads": threads, "omp_wait_policy": wait}


def search(args):
    """Every thread setting in a fresh process."""
    settings = []
    for blas, threads, wait in thread_settings(args.blas_threads, args.torch_threads):
        cmd = [sys.executable, os.path.abspath(__file__), "time", args.dir, "--tokens", ",".join(map(str, args.tokens)),
               "--dtype", args.dtype, "--workload", ",".join(args.workload), "--threads", str(threads), "--reps", str(args.reps)]
        res = run_fresh(cmd, blas, threads, wait)
        settings.append(dict(setting_of(blas, threads, wait),
                             points={p["tokens"]: p["tokens_per_s"] for p in res["points"]}))
    best = {t: max(settings, key=lambda s: s["points"][t]["median"]) for t in args.tokens}
    print(json.dumps({"bench": "torch_peer_search", "dtype": args.dtype, "workload": args.workload[0], "reps": args.reps,
                      "settings": settings,
                      "best": {t: {k: s[k] for k in ("openblas_num_threads", "torch_threads", "omp_wait_policy")}
                               for t, s in best.items()}}))


def check(args):
    t = args.tokens[0]
    want = read_tensor(os.path.join(args.dir, f"expected_{t}.safetensors"), "hidden_states")
    got = read_tensor(args.output, "hidden_states").double()
    rel = float((got - want).norm() / want.norm())
    print(json.dumps({"bench": "check", "tokens": t, "rel_l2_vs_torch_fp64": rel}))


def int_list(s):
    return [int(v) for v in s.split(",")]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", choices=["make", "search", "time", "check"])
    p.add_argument("dir")
    p.add_argument("--d-model", type=int, default=1024)
    p.add_argument("--d-ff", type=int, default=3584)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--tokens", type=int_list, default=[4096, 128])
    p.add_argument("--expected", type=lambda s: [int(v) for v in s.split(",") if v], default=None)
    p.add_argument("--steps", type=int, default=20, help="make: steps of each workload file")
    p.add_argument("--workload-tokens", type=int_list, default=None, help="make: token counts with workload files")
    p.add_argument("--workloads", type=lambda s: [w for w in s.split(",") if w], default=["uniform", "skewed", "drift"])
    p.add_argument("--workload", type=lambda s: s.split(","), default=["fixed"],
                   help="time: fixed, uniform, skewed, drift (a list); search: one of them")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    p.add_argument("--threads", type=int, default=1, help="time: torch.set_num_threads")
    p.add_argument("--reps", type=int, default=7, help="time/search: timed steps")
    p.add_argument("--blas-threads", type=int_list, default=None,
                   help="search: OPENBLAS_NUM_THREADS values (default 1, cores/2, cores)")
    p.add_argument("--torch-threads", type=int_list, default=None,
                   help="search: torch thread counts (default 1, cores/2, cores)")
    p.add_argument("--output")
    args = p.parse_args()
    args.expected = args.tokens if args.expected is None else args.expected  # --expected "" writes none
    args.workload_tokens = args.tokens if args.workload_tokens is None else args.workload_tokens
    {"make": make, "search": search, "time": time_block, "check": check}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
