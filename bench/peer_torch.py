#!/usr/bin/python3
"""The PyTorch peer of epmoe's layer bench: Hugging Face's MixtralSparseMoeBlock forward, written here in
torch (transformers is not a Debian package), on the same weights and tokens epmoe runs.

    peer_torch.py make DIR --d-model 1024 --d-ff 3584 --experts 8 --top-k 2 --tokens 4096,128
        writes DIR/model (a one-layer Mixtral checkpoint: config.json + model.safetensors, F32),
        DIR/input_<T>.safetensors (hidden_states [T, d_model]) and DIR/expected_<T>.safetensors
        (hidden_states after h + block(RMSNorm(h)), computed here in float64 for the check; only for the
        token counts of --expected, default all)
    peer_torch.py time DIR --tokens 4096 --threads 2,1 --reps 7 --search-reps 2
        times the block (the HF code path: router, softmax, topk, renormalise, one_hot expert mask,
        per-expert index_add_): --reps times at the first thread count, --search-reps at the others (if
        one wins, it is the best); prints one JSON line with tokens/s median/min/max per thread count and
        the best
    peer_torch.py check DIR --tokens 4096 --output FILE
        relative L2 of epmoe's --dump-output hidden_states against DIR/expected_<T>; one JSON line

Run with OMP_WAIT_POLICY=PASSIVE on a shared 2-core machine (the default wait policy spins; bench/run.sh
sets it). Needs Debian's python3-torch.
"""
import argparse
import json
import os
import statistics
import struct
import sys
import time

import torch
import torch.nn.functional as F

CODES = {torch.float32: "F32", torch.float64: "F64"}


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        raw = tensors[name].contiguous().numpy().tobytes()
        header[name] = {"dtype": CODES[tensors[name].dtype], "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for b in blobs:
            f.write(b)


def read_tensor(path, name):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        meta = header[name]
        start, end = meta["data_offsets"]
        f.seek(8 + n + start)
        data = bytearray(f.read(end - start))
    dtype = {"F32": torch.float32, "F64": torch.float64}[meta["dtype"]]
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


def make(args):
    torch.manual_seed(0)
    d, f, e = args.d_model, args.d_ff, args.experts
    model_dir = os.path.join(args.dir, "model")
    os.makedirs(model_dir, exist_ok=True)
    block = SparseMoeBlock(d, f, e, args.top_k)
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
        if t not in args.expected:
            continue
        with torch.no_grad():
            h64 = h.double()
            out = h64 + block64(rms_norm(h64, norm.double(), cfg["rms_norm_eps"]))
        write_safetensors(os.path.join(args.dir, f"expected_{t}.safetensors"), {"hidden_states": out})


def time_block(args):
    block, norm, cfg = load_block(os.path.join(args.dir, "model"))
    out = {"bench": "torch_peer", "torch": torch.__version__, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
           "block": "MixtralSparseMoeBlock (HF code path)", "points": []}
    for t in args.tokens:
        x = rms_norm(read_tensor(os.path.join(args.dir, f"input_{t}.safetensors"), "hidden_states"), norm,
                     cfg["rms_norm_eps"])
        point = {"tokens": t, "by_threads": {}}
        for i, threads in enumerate(args.threads):
            torch.set_num_threads(threads)
            times = []
            # The first thread count gets --reps; the others --search-reps, to see whether they beat it.
            reps = args.reps if i == 0 else args.search_reps
            with torch.inference_mode():
                block(x)  # warm-up
                for _ in range(reps):
                    t0 = time.perf_counter()
                    block(x)
                    times.append(time.perf_counter() - t0)
            tps = sorted(t / s for s in times)
            point["by_threads"][str(threads)] = {"tokens_per_s": {"median": statistics.median(tps), "min": tps[0],
                                                                  "max": tps[-1]}, "reps": reps}
        best = max(point["by_threads"], key=lambda k: point["by_threads"][k]["tokens_per_s"]["median"])
        point["best_threads"] = int(best)
        point["tokens_per_s"] = point["by_threads"][best]["tokens_per_s"]
        out["points"].append(point)
    print(json.dumps(out))


def check(args):
    t = args.tokens[0]
    want = read_tensor(os.path.join(args.dir, f"expected_{t}.safetensors"), "hidden_states")
    got = read_tensor(args.output, "hidden_states").double()
    rel = float((got - want).norm() / want.norm())
    print(json.dumps({"bench": "check", "tokens": t, "rel_l2_vs_torch_fp64": rel}))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", choices=["make", "time", "check"])
    p.add_argument("dir")
    p.add_argument("--d-model", type=int, default=1024)
    p.add_argument("--d-ff", type=int, default=3584)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--tokens", type=lambda s: [int(v) for v in s.split(",")], default=[4096, 128])
    p.add_argument("--threads", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2])
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--search-reps", type=int, default=2)
    p.add_argument("--expected", type=lambda s: [int(v) for v in s.split(",")], default=None)
    p.add_argument("--output")
    args = p.parse_args()
    if args.expected is None:
        args.expected = args.tokens
    {"make": make, "time": time_block, "check": check}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
