#!/usr/bin/python3
"""The PyTorch peer of epmoe's training bench: Hugging Face's MixtralForCausalLM trained as transformers would
train it (labels = input_ids, the LM loss plus router_aux_loss_coef x load_balancing_loss_func), with the
optimizer `epmoe train` runs: torch.optim.AdamW (betas 0.9, 0.95, eps 1e-8, weight decay on matrices only, the
routers excepted), clip_grad_norm_ and nanoGPT's warmup + cosine rate. Autograd does the backward. Written in
Debian's torch (1.13) on peer_model.py's forward.

    peer_train.py make DIR --layers 2 --d-model 512 --d-ff 1024 --experts 8 --top-k 2 --vocab 8192
                  --heads 8 --kv-heads 4 --head-dim 64 --rows 64 --ctx 256
        writes DIR/model (peer_model.py's checkpoint, random weights from seed 0, router_aux_loss_coef 0.01)
        and DIR/train.safetensors (input_ids I32 [rows, ctx], uniform over the vocabulary)
    peer_train.py time DIR --batch 8 --steps 6 --threads 2 --lr 0.003 --min-lr 0.0003 --warmup 2
        trains --steps steps; step s takes rows (s * batch ... s * batch + batch - 1) mod rows, as `epmoe train
        --sampler sequential` does; prints one JSON line with each step's seconds (forward with the losses,
        backward, optimizer with the clipping), lm and aux losses, grad norm, and tokens/s (the first step a
        warm-up, left out of the medians)
    peer_train.py search DIR --batch 8 --steps 3
        runs `time` in a fresh process for every thread setting (peer_torch.py's); one JSON line with the best
        setting for 1 core and for all of them (no pool given more threads than that)
    peer_train.py flops DIR --batch 8
        the FLOPs of one training step by the 6 N T rule (N: the weights a token multiplies: attention, router,
        top_k experts, LM head; no embeddings, no attention scores) and the same model's parameter counts

Needs Debian's python3-torch.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import peer_model
from peer_torch import read_tensor, run_fresh, setting_of, thread_settings, write_safetensors


def make(args):
    args.eval_sequences, args.prompts, args.prompt_len = 1, [], 1
    peer_model.make(args)
    cfg_path = os.path.join(args.dir, "model", "config.json")
    cfg = json.load(open(cfg_path))
    cfg.update(router_aux_loss_coef=args.aux_loss_coef, output_router_logits=True)
    json.dump(cfg, open(cfg_path, "w"), indent=1)
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, args.vocab, (args.rows, args.ctx), generator=gen, dtype=torch.int32)
    write_safetensors(os.path.join(args.dir, "train.safetensors"), {"input_ids": ids})
    os.remove(os.path.join(args.dir, "eval.safetensors"))  # peer_model.make's; training reads train.safetensors


def trainable(model):
    """(name, tensor, decays) of every weight, the tensors made leaves that require grad."""
    out = [("embed", model.embed, True), ("norm", model.norm, False), ("lm_head", model.lm_head, True)]
    for i, layer in enumerate(model.layers):
        for key in ("in_norm", "post_norm"):
            out.append((f"{i}.{key}", layer[key], False))
        for key in ("q_proj", "k_proj", "v_proj", "o_proj"):
            out.append((f"{i}.{key}", layer[key], True))
        for name, p in layer["moe"].named_parameters():
            out.append((f"{i}.{name}", p, not name.startswith("gate.")))
    for _, t, _ in out:
        t.requires_grad_(True)
    return out


def load_balancing_loss(router_logits, num_experts, top_k):
    """transformers' load_balancing_loss_func with no attention mask."""
    logits = torch.cat(router_logits, dim=0)
    weights = F.softmax(logits, dim=-1)
    _, selected = torch.topk(weights, top_k, dim=-1)
    mask = F.one_hot(selected, num_experts)
    return torch.sum(mask.float().mean(dim=0) * weights.mean(dim=0).unsqueeze(0)) * num_experts


def learning_rate(step, args):
    """nanoGPT's get_lr, as epmoe's LrSchedule (decay over the run's steps)."""
    if step < args.warmup:
        return args.lr * (step + 1) / (args.warmup + 1)
    if step >= args.steps:
        return args.min_lr
    r = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.min_lr + 0.5 * (1 + math.cos(math.pi * r)) * (args.lr - args.min_lr)


def train_step(model, params, optimizer, ids, step, args):
    """One step; (seconds of forward, backward, optimizer), losses, grad norm."""
    cfg = model.cfg
    t0 = time.perf_counter()
    logits, _ = model.forward(ids)
    lm = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1))
    aux = load_balancing_loss([layer["moe"].router_logits for layer in model.layers], cfg["num_local_experts"],
                              cfg["num_experts_per_tok"])
    loss = lm + cfg["router_aux_loss_coef"] * aux
    t1 = time.perf_counter()
    optimizer.zero_grad(set_to_none=False)
    loss.backward()
    t2 = time.perf_counter()
    norm = torch.nn.utils.clip_grad_norm_([p for _, p, _ in params], args.grad_clip)
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(step, args)
    optimizer.step()
    t3 = time.perf_counter()
    return (t1 - t0, t2 - t1, t3 - t2), float(lm), float(aux), float(norm)


def time_train(args):
    torch.set_num_threads(args.threads)
    model = peer_model.Model(os.path.join(args.dir, "model"))
    params = trainable(model)
    optimizer = torch.optim.AdamW(
        [{"params": [p for _, p, d in params if d], "weight_decay": args.weight_decay},
         {"params": [p for _, p, d in params if not d], "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.95), eps=1e-8, foreach=True)
    rows = peer_model.read_ids(os.path.join(args.dir, "train.safetensors"))
    steps = []
    for s in range(args.steps):
        index = torch.arange(s * args.batch, (s + 1) * args.batch) % rows.shape[0]
        seconds, lm, aux, norm = train_step(model, params, optimizer, rows[index], s, args)
        steps.append({"step": s, "forward_s": seconds[0], "backward_s": seconds[1], "optimizer_s": seconds[2],
                      "lm_loss": lm, "aux_loss": aux, "grad_norm": norm,
                      "tokens_per_s": args.batch * rows.shape[1] / sum(seconds)})
    timed = steps[1:] or steps
    tps = sorted(s["tokens_per_s"] for s in timed)
    print(json.dumps({"bench": "torch_peer_train", "torch": torch.__version__,
                      **setting_of(os.environ.get("OPENBLAS_NUM_THREADS"), torch.get_num_threads(),
                                   os.environ.get("OMP_WAIT_POLICY")),
                      "batch": args.batch, "ctx": int(rows.shape[1]), "steps": steps,
                      "tokens_per_s": {"median": statistics.median(tps), "min": tps[0], "max": tps[-1],
                                       "n": len(tps)},
                      "breakdown_s": {k: statistics.median(s[k] for s in timed)
                                      for k in ("forward_s", "backward_s", "optimizer_s")}}))


def search(args):
    """Every thread setting in a fresh process; the best by median tokens/s."""
    settings = []
    for blas, threads, wait in thread_settings():
        cmd = [sys.executable, os.path.abspath(__file__), "time", args.dir, "--batch", str(args.batch),
               "--steps", str(args.steps), "--threads", str(threads)]
        res = run_fresh(cmd, blas, threads, wait)
        settings.append(dict(setting_of(blas, threads, wait), tokens_per_s=res["tokens_per_s"]))
    best = {}
    for cores in sorted({1, os.cpu_count() or 1}):  # the best setting using at most `cores` threads a pool
        fits = [s for s in settings if max(s["openblas_num_threads"], s["torch_threads"]) <= cores]
        b = max(fits, key=lambda s: s["tokens_per_s"]["median"])
        best[cores] = setting_of(b["openblas_num_threads"], b["torch_threads"], b["omp_wait_policy"])
    print(json.dumps({"bench": "torch_peer_train_search", "settings": settings, "best": best}))


def flops(args):
    cfg = json.load(open(os.path.join(args.dir, "model", "config.json")))
    d, f, v, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    hd, e, k = cfg["head_dim"], cfg["num_local_experts"], cfg["num_experts_per_tok"]
    attn = d * hd * (2 * cfg["num_attention_heads"] + 2 * cfg["num_key_value_heads"])
    expert = 3 * d * f
    active = L * (attn + d * e + k * expert) + v * d
    total = L * (attn + d * e + e * expert + 2 * d) + 2 * v * d + d
    ctx = read_tensor(os.path.join(args.dir, "train.safetensors"), "input_ids").shape[1]
    tokens = args.batch * ctx
    print(json.dumps({"active_params": active, "total_params": total, "tokens_per_step": tokens,
                      "flops_per_step": 6 * active * tokens, "rule": "6 x active matmul weights x tokens"}))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", choices=["make", "time", "search", "flops"])
    p.add_argument("dir")
    for name, default in (("layers", 2), ("d-model", 512), ("d-ff", 1024), ("experts", 8), ("top-k", 2),
                          ("vocab", 8192), ("heads", 8), ("kv-heads", 4), ("head-dim", 64), ("rows", 64),
                          ("ctx", 256)):
        p.add_argument("--" + name, type=int, default=default, help="make")
    p.add_argument("--aux-loss-coef", type=float, default=0.01, help="make: router_aux_loss_coef")
    p.add_argument("--batch", type=int, default=8, help="windows a step")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--threads", type=int, default=1, help="time: torch.set_num_threads")
    p.add_argument("--lr", type=float, default=0.003)
    p.add_argument("--min-lr", type=float, default=0.0003)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    args = p.parse_args()
    {"make": make, "time": time_train, "search": search, "flops": flops}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
