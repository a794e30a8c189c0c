"""Rewrites a checkpoint folder (one F32 model.safetensors) in transformers 5's runtime layout, as
save_pretrained(save_original_format=False) writes it: each MoE layer's module named mlp (Mixtral's
block_sparse_moe renamed) and its experts fused into experts.gate_up_proj [E, 2 d_ff, d] (each expert's
gate_proj / w1 rows, then its up_proj / w3 rows) and experts.down_proj [E, d, d_ff]. The same rewrite of a
gradients file (tests/fixtures/models/*/grads.safetensors) gives what those fused parameters' gradients are.

Usage: python3 fuse_experts.py FOLDER OUT_FOLDER GRADS OUT_GRADS (standard library only)."""
import os
import re
import shutil
import sys

import st_read

EXPERT = re.compile(r"^(model\.layers\.\d+\.)(?:block_sparse_moe|mlp)\.experts\.(\d+)\.(\w+)\.weight$")
MODULE = re.compile(r"^(model\.layers\.\d+\.)block_sparse_moe\.")
ROLE = {"w1": "gate", "gate_proj": "gate", "w3": "up", "up_proj": "up", "w2": "down", "down_proj": "down"}


def fuse(tensors):
    out, experts = {}, {}
    for name, (shape, values) in tensors.items():
        m = EXPERT.match(name)
        if m and m.group(3) in ROLE:
            experts.setdefault(m.group(1), {})[(int(m.group(2)), ROLE[m.group(3)])] = (shape, values)
        else:
            dtype = "F32" if values.typecode == "f" else "I32"
            out[MODULE.sub(r"\1mlp.", name)] = (dtype, shape, values)
    for layer, parts in experts.items():
        count = 1 + max(e for e, _ in parts)
        (d_ff, d_model), _ = parts[(0, "gate")]
        gate_up, down = [], []
        for e in range(count):
            gate_up += list(parts[(e, "gate")][1]) + list(parts[(e, "up")][1])
            down += list(parts[(e, "down")][1])
        out[layer + "mlp.experts.gate_up_proj"] = ("F32", [count, 2 * d_ff, d_model], gate_up)
        out[layer + "mlp.experts.down_proj"] = ("F32", [count, d_model, d_ff], down)
    return out


def main(folder, out_folder, grads, out_grads):
    os.makedirs(out_folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(".json"):
            shutil.copy(os.path.join(folder, name), out_folder)
    st_read.write(os.path.join(out_folder, "model.safetensors"), fuse(st_read.read(os.path.join(folder, "model.safetensors"))))
    st_read.write(out_grads, fuse(st_read.read(grads)))


if __name__ == "__main__":
    main(*sys.argv[1:5])
