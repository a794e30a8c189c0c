#!/usr/bin/python3
"""The PyTorch peer of epmoe's whole-model bench: Hugging Face's MixtralForCausalLM forward (eager attention,
KV cache as DynamicCache keeps it), written here in Debian's torch, on the checkpoint and tokens epmoe runs.

    peer_model.py make DIR --layers 4 --d-model 1024 --d-ff 2048 --experts 8 --top-k 2 --vocab 32000
                  --eval-sequences 32 --ctx 256 --prompts 2,32 --prompt-len 128
        writes DIR/model (config.json as transformers 5 writes it + model.safetensors, F32, random weights from
        seed 0), DIR/eval.safetensors (input_ids I32 [eval_sequences, ctx]) and DIR/prompts_<B>.safetensors
        (input_ids I32 [B, prompt_len]); the ids are uniform over the vocabulary
    peer_model.py time DIR --mode eval --batch 8 --reps 3 --threads 2
        eval: the windows of eval.safetensors (one a row, as `epmoe eval --ctx <its S>` runs them), --batch rows
        a forward, after one warm-up forward; each rep is one timed pass over all rows; prints one JSON line with
        tokens/s a rep, the time breakdown and the mean NLL (F.cross_entropy of the shifted logits, HF's loss)
    peer_model.py time DIR --mode decode --batch 32 --new-tokens 32 --reps 3 --threads 2
        decode: prefill of prompts_<batch> (the last row's logits), then new_tokens - 1 greedy steps of one token
        a sequence with the KV cache, as epmoe generate runs them; per-step ms, the breakdown and generated ids
        (in DIR/peer_ids_<batch>.safetensors)
    peer_model.py search DIR --mode decode --batch 2,32 --new-tokens 8 --prompt-tokens 32  |  --mode eval --windows 8
        runs `time` in a fresh process for every thread setting (peer_torch.py's search); one JSON line
    peer_model.py check DIR --eval RESULTS/eval.json  |  --generated RESULTS/generated.safetensors --batch 32
        the cross-checks: epmoe's mean NLL against the peer's (relative difference), epmoe's greedy ids against
        the peer's (equal; else the first sequence and step that differ); one JSON line

Needs Debian's python3-torch.
"""
import argparse
import contextlib
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from peer_torch import SparseMoeBlock, read_tensor, rms_norm, run_fresh, setting_of, thread_settings, write_safetensors


class Parts:
    """Seconds spent in each part of the forward, summed while `on`."""
    NAMES = ("embed", "attention", "moe", "lm_head")

    def __init__(self):
        self.on, self.s = False, dict.fromkeys(self.NAMES, 0.0)

    @contextlib.contextmanager
    def __call__(self, name):
        t0 = time.perf_counter()
        yield
        if self.on:
            self.s[name] += time.perf_counter() - t0


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Model:
    """MixtralForCausalLM's forward as transformers computes it in FP32 with eager attention."""

    def __init__(self, model_dir):
        cfg = json.load(open(os.path.join(model_dir, "config.json")))
        path = os.path.join(model_dir, "model.safetensors")
        self.cfg, self.parts = cfg, Parts()
        self.heads, self.kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.head_dim = cfg.get("head_dim") or cfg["hidden_size"] // self.heads
        self.eps = cfg["rms_norm_eps"]
        theta = cfg["rope_parameters"]["rope_theta"]
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.int64).float() / self.head_dim))
        w = lambda name: read_tensor(path, name)
        self.embed = w("model.embed_tokens.weight")  # [vocab, d_model]
        self.norm, self.lm_head = w("model.norm.weight"), w("lm_head.weight")  # [d_model], [vocab, d_model]
        self.layers = []
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            moe = SparseMoeBlock(cfg["hidden_size"], cfg["intermediate_size"], cfg["num_local_experts"],
                                 cfg["num_experts_per_tok"])
            with torch.no_grad():
                moe.gate.weight.copy_(w(p + "block_sparse_moe.gate.weight"))
                for e, expert in enumerate(moe.experts):
                    for name in ("w1", "w2", "w3"):
                        getattr(expert, name).weight.copy_(w(f"{p}block_sparse_moe.experts.{e}.{name}.weight"))
            self.layers.append({"in_norm": w(p + "input_layernorm.weight"),
                                "post_norm": w(p + "post_attention_layernorm.weight"),
                                **{n: w(f"{p}self_attn.{n}.weight") for n in ("q_proj", "k_proj", "v_proj", "o_proj")},
                                "moe": moe.eval()})

    def rope(self, positions):
        """cos, sin [S, head_dim] of MixtralRotaryEmbedding (float32)."""
        freqs = positions[:, None].float() * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()

    def repeat_kv(self, x):
        """[B, kv_heads, T, head_dim] -> [B, heads, T, head_dim], as HF's repeat_kv."""
        b, _, t, _ = x.shape
        rep = self.heads // self.kv_heads
        return x[:, :, None].expand(b, self.kv_heads, rep, t, self.head_dim).reshape(b, self.heads, t, self.head_dim)

    def attention(self, layer, h, cos, sin, cache):
        """MixtralAttention, eager: h [B, S, d]; cache (k, v) [B, kv_heads, past, head_dim] or None."""
        b, s, _ = h.shape
        q = F.linear(h, layer["q_proj"]).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = F.linear(h, layer["k_proj"]).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = F.linear(h, layer["v_proj"]).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if cache is not None:  # DynamicCache.update: torch.cat along the sequence
            k, v = torch.cat((cache[0], k), dim=-2), torch.cat((cache[1], v), dim=-2)
        new_cache = (k, v)
        k, v = self.repeat_kv(k), self.repeat_kv(v)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.head_dim ** -0.5  # [B, H, S, past + S]
        if s > 1:
            past = k.shape[2] - s
            mask = torch.full((s, k.shape[2]), torch.finfo(scores.dtype).min).triu(past + 1)
            scores = scores + mask
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(b, s, self.heads * self.head_dim)
        return F.linear(out, layer["o_proj"]), new_cache

    def forward(self, ids, caches=None, last_only=False):
        """ids [B, S] -> logits [B, S or 1, vocab], caches (one (k, v) a layer)."""
        past = 0 if caches is None else caches[0][0].shape[2]
        with self.parts("embed"):
            h = F.embedding(ids, self.embed)
            cos, sin = self.rope(torch.arange(past, past + ids.shape[1]))
        new_caches = []
        for i, layer in enumerate(self.layers):
            with self.parts("attention"):
                a, c = self.attention(layer, rms_norm(h, layer["in_norm"], self.eps), cos, sin,
                                      None if caches is None else caches[i])
                h = h + a
            new_caches.append(c)
            with self.parts("moe"):
                x = rms_norm(h, layer["post_norm"], self.eps)
                h = h + layer["moe"](x.view(-1, x.shape[-1])).view(x.shape)
        with self.parts("lm_head"):
            if last_only:  # generate(): logits_to_keep=1
                h = h[:, -1:]
            logits = F.linear(rms_norm(h, self.norm, self.eps), self.lm_head)
        return logits, new_caches


def read_ids(path):
    return read_tensor(path, "input_ids").long()


def make(args):
    torch.manual_seed(0)
    d, f, e, v, L = args.d_model, args.d_ff, args.experts, args.vocab, args.layers
    kv_dim = args.kv_heads * args.head_dim
    model_dir = os.path.join(args.dir, "model")
    os.makedirs(model_dir, exist_ok=True)
    rnd = lambda *shape: torch.randn(*shape) / shape[-1] ** 0.5  # unit-gain projections
    t = {"model.embed_tokens.weight": torch.randn(v, d), "model.norm.weight": 1.0 + 0.1 * torch.randn(d),
         "lm_head.weight": rnd(v, d)}
    for i in range(L):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = 1.0 + 0.1 * torch.randn(d)
        t[p + "post_attention_layernorm.weight"] = 1.0 + 0.1 * torch.randn(d)
        t[p + "self_attn.q_proj.weight"] = rnd(args.heads * args.head_dim, d)
        t[p + "self_attn.o_proj.weight"] = rnd(d, args.heads * args.head_dim)
        t[p + "self_attn.k_proj.weight"], t[p + "self_attn.v_proj.weight"] = rnd(kv_dim, d), rnd(kv_dim, d)
        t[p + "block_sparse_moe.gate.weight"] = 2.0 * rnd(e, d)
        for x in range(e):
            q = f"{p}block_sparse_moe.experts.{x}."
            t[q + "w1.weight"], t[q + "w3.weight"], t[q + "w2.weight"] = rnd(f, d), rnd(f, d), rnd(d, f)
    write_safetensors(os.path.join(model_dir, "model.safetensors"), t)
    cfg = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "attention_dropout": 0.0,
           "dtype": "float32", "head_dim": args.head_dim, "hidden_act": "silu", "hidden_size": d,
           "intermediate_size": f, "max_position_embeddings": 4096, "num_attention_heads": args.heads,
           "num_experts_per_tok": args.top_k, "num_hidden_layers": L, "num_key_value_heads": args.kv_heads,
           "num_local_experts": e, "rms_norm_eps": 1e-5,
           "rope_parameters": {"rope_theta": 1e6, "rope_type": "default"}, "router_jitter_noise": 0.0,
           "sliding_window": None, "tie_word_embeddings": False, "vocab_size": v, "transformers_version": "5.17.0"}
    json.dump(cfg, open(os.path.join(model_dir, "config.json"), "w"), indent=1)
    gen = torch.Generator().manual_seed(1)
    ids = lambda b, s: {"input_ids": torch.randint(0, v, (b, s), generator=gen, dtype=torch.int32)}
    write_safetensors(os.path.join(args.dir, "eval.safetensors"), ids(args.eval_sequences, args.ctx))
    for b in args.prompts:
        write_safetensors(os.path.join(args.dir, f"prompts_{b}.safetensors"), ids(b, args.prompt_len))


def stats(values):
    values = sorted(values)
    return {"median": statistics.median(values), "min": values[0], "max": values[-1], "n": len(values)}


def percentile(values, q):
    """Nearest rank (as epmoe generate's p50/p99) of a sorted non-empty list."""
    return values[max(0, -(-q * len(values) // 100) - 1)]


def time_eval(model, args, batch):
    ids = read_ids(os.path.join(args.dir, "eval.safetensors"))[:args.windows or None]  # [windows, ctx]
    batches = list(torch.split(ids, batch))
    model.forward(batches[0])  # warm-up
    model.parts.on = True
    reps, nll_sum, scored = [], 0.0, 0
    for rep in range(args.reps):
        seconds = []
        for b in batches:
            t0 = time.perf_counter()
            logits, _ = model.forward(b)
            nll = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), b[:, 1:].reshape(-1),
                                  reduction="none")
            seconds.append(time.perf_counter() - t0)
            if rep == 0:
                nll_sum, scored = nll_sum + float(nll.double().sum()), scored + nll.numel()
        reps.append({"seconds": sum(seconds), "step_s": seconds, "tokens_per_s": ids.numel() / sum(seconds)})
    return {"windows": ids.shape[0], "ctx": ids.shape[1], "batch": batch, "tokens": ids.numel(), "reps": reps,
            "tokens_per_s": stats([r["tokens_per_s"] for r in reps]), "tokens_scored": scored,
            "mean_nll": nll_sum / scored}


def time_decode(model, args, batch):
    prompts = read_ids(os.path.join(args.dir, f"prompts_{batch}.safetensors"))[:, :args.prompt_tokens or None]
    model.forward(prompts[:, :8], last_only=True)  # warm-up
    reps = []
    for rep in range(args.reps):
        model.parts.on = False
        t0 = time.perf_counter()
        logits, caches = model.forward(prompts, last_only=True)
        prefill_s = time.perf_counter() - t0
        model.parts.on = rep == 0  # the breakdown of the first rep's decode steps
        out = [logits[:, -1].argmax(-1)]
        steps = []
        for _ in range(args.new_tokens - 1):
            t0 = time.perf_counter()
            logits, caches = model.forward(out[-1][:, None], caches, last_only=True)
            steps.append(time.perf_counter() - t0)
            out.append(logits[:, -1].argmax(-1))
        ms = sorted(1e3 * s for s in steps)
        reps.append({"prefill_tokens_per_s": prompts.numel() / prefill_s, "decode_ms": ms,
                     "decode_ms_p50": percentile(ms, 50), "decode_ms_p99": percentile(ms, 99)})
    ids = torch.stack(out, dim=1).to(torch.int32)  # [B, new_tokens]
    write_safetensors(os.path.join(args.dir, f"peer_ids_{batch}.safetensors"), {"generated_ids": ids})
    return {"batch": batch, "prompt_len": prompts.shape[1], "new_tokens": args.new_tokens, "reps": reps,
            "decode_ms_p50": stats([r["decode_ms_p50"] for r in reps]),
            "decode_ms_p99": stats([r["decode_ms_p99"] for r in reps]),
            "prefill_tokens_per_s": stats([r["prefill_tokens_per_s"] for r in reps])}


def time_model(args):
    torch.set_num_threads(args.threads)
    model = Model(os.path.join(args.dir, "model"))
    out = {"bench": "torch_peer_model", "mode": args.mode, "torch": torch.__version__,
           **setting_of(os.environ.get("OPENBLAS_NUM_THREADS"), torch.get_num_threads(),
                        os.environ.get("OMP_WAIT_POLICY")),
           "points": []}
    with torch.inference_mode():
        for batch in args.batch:
            model.parts = Parts()
            point = (time_eval if args.mode == "eval" else time_decode)(model, args, batch)
            point["time_breakdown_s"] = model.parts.s
            out["points"].append(point)
    print(json.dumps(out))


def search(args):
    """Every thread setting (peer_torch.thread_settings) in a fresh process; the best per batch: the highest
    tokens/s (eval) or the lowest decode ms a step (decode)."""
    settings = []
    for blas, threads, wait in thread_settings():
        cmd = [sys.executable, os.path.abspath(__file__), "time", args.dir, "--mode", args.mode,
               "--reps", str(args.reps), "--batch", ",".join(map(str, args.batch)),
               "--new-tokens", str(args.new_tokens), "--windows", str(args.windows),
               "--prompt-tokens", str(args.prompt_tokens), "--threads", str(threads)]
        res = run_fresh(cmd, blas, threads, wait)
        key = "tokens_per_s" if args.mode == "eval" else "decode_ms_p50"
        settings.append(dict(setting_of(blas, threads, wait), points={p["batch"]: p[key] for p in res["points"]}))
    sign = 1 if args.mode == "eval" else -1
    best = {b: max(settings, key=lambda s: sign * s["points"][b]["median"]) for b in args.batch}
    print(json.dumps({"bench": "torch_peer_model_search", "mode": args.mode, "reps": args.reps, "settings": settings,
                      "best": {b: setting_of(s["openblas_num_threads"], s["torch_threads"], s["omp_wait_policy"])
                               for b, s in best.items()}}))


def check(args):
    if args.eval:
        ours = json.load(open(args.eval))
        peer = json.load(open(args.peer))["points"][0]
        rel = abs(ours["mean_nll"] - peer["mean_nll"]) / abs(peer["mean_nll"])
        out = {"check": "eval_nll", "epmoe_mean_nll": ours["mean_nll"], "peer_mean_nll": peer["mean_nll"],
               "epmoe_tokens_scored": ours["tokens_scored"], "peer_tokens_scored": peer["tokens_scored"],
               "rel_diff": rel, "ok": rel <= 1e-4 and ours["tokens_scored"] == peer["tokens_scored"]}
    else:
        ours = read_tensor(args.generated, "generated_ids")
        peer = read_tensor(os.path.join(args.dir, f"peer_ids_{args.batch[0]}.safetensors"), "generated_ids")
        differ = (ours != peer).nonzero().tolist() if ours.shape == peer.shape else [[-1, -1]]
        out = {"check": "greedy_ids", "batch": args.batch[0], "shape": list(ours.shape), "equal": not differ,
               "sequences_differing": len({s for s, _ in differ}), "first_difference": differ[0] if differ else None}
    print(json.dumps(out))


def int_list(s):
    return [int(v) for v in s.split(",")]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", choices=["make", "time", "search", "check"])
    p.add_argument("dir")
    for name, default in (("layers", 4), ("d-model", 1024), ("d-ff", 2048), ("experts", 8), ("top-k", 2),
                          ("vocab", 32000), ("heads", 16), ("kv-heads", 8), ("head-dim", 64),
                          ("eval-sequences", 32), ("ctx", 256), ("prompt-len", 128)):
        p.add_argument("--" + name, type=int, default=default, help="make")
    p.add_argument("--prompts", type=int_list, default=[2, 32], help="make: prompt counts, one file each")
    p.add_argument("--mode", choices=["eval", "decode"], default="eval")
    p.add_argument("--batch", type=int_list, default=[8], help="eval: windows a forward; decode: prompt files")
    p.add_argument("--new-tokens", type=int, default=32, help="decode: generated tokens a sequence")
    p.add_argument("--windows", type=int, default=0, help="eval: the first rows of eval.safetensors only (0: all)")
    p.add_argument("--prompt-tokens", type=int, default=0, help="decode: each prompt's first tokens only (0: all)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="time: torch.set_num_threads")
    p.add_argument("--eval", help="check: epmoe's eval.json")
    p.add_argument("--peer", help="check: the peer's eval JSON")
    p.add_argument("--generated", help="check: epmoe's generated.safetensors")
    args = p.parse_args()
    {"make": make, "time": time_model, "search": search, "check": check}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
