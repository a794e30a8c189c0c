#!/usr/bin/env bash
# compute.backend / compute.dtype end to end under this build's MPI: a bad pair exits 2 naming the key,
# the resolved kernel shows in `epmoe info` and summary.json, BF16 holds half the expert bytes, BF16 output
# does not depend on the rank count (1-4 ranks, 1e-5), BF16 stays within 1e-2 of FP32, --bind binds, and
# experts run as tasks on 2 threads give the bits of 1 thread, the shared-memory token exchange gives the
# bits of MPI's, and weights in column panels (compute.weight_panel_kib) give the whole matrices' outputs.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe binary}" "${MPIEXEC:?set MPIEXEC to mpiexec and its flags}"
read -r -a mpiexec <<<"$MPIEXEC"
small=(--set model.d_model=48 --set model.d_ff=80 --set model.num_layers=2 -q)

# 1. Bad pairs and values: exit 2, one error line naming the key, at 2 ranks.
expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" run "${small[@]}" --steps 1 --out "$cli_tmp/bad" \
    --set compute.backend=openblas --set compute.dtype=bf16
expect_stderr_has "epmoe: error: config key compute.dtype = \"bf16\": compute.backend openblas runs fp32 only"
expect_one_error_line
expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" run "${small[@]}" --steps 1 --out "$cli_tmp/bad" --set compute.backend=mkl
expect_stderr_has "compute.backend = \"mkl\""
expect_one_error_line
expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" info --set compute.dtype=fp16
expect_stderr_has "compute.dtype = \"fp16\""
if [ ! -e "$cli_tmp/bad/summary.json" ]; then pass "  no summary.json after a bad pair"; else fail_check "summary.json left"; fi

# 2. `epmoe info` names the kernel compute.backend=auto resolves to: amx/bf16 where the CPU and kernel allow
#    AMX tiles (/proc/cpuinfo's amx_bf16 flag), onednn/bf16 elsewhere.
bf16_kernel=onednn/bf16
grep -qw amx_bf16 /proc/cpuinfo && bf16_kernel=amx/bf16
expect_exit 0 "$EPMOE" info --set compute.dtype=bf16
expect_stdout_has "compute: $bf16_kernel (compute.backend = auto, compute.dtype = bf16)"
expect_exit 0 "$EPMOE" info --json
if python3 -c "import json, sys
c = json.load(open(sys.argv[1]))['compute']
assert c['backend'] == 'auto' and c['dtype'] == 'fp32' and c['kernel'] in ('openblas/fp32', 'onednn/fp32'), c
assert c['implementation'] and c['onednn'].startswith('oneDNN '), c" "$out_file"; then
    pass "  info --json: compute {backend, dtype, kernel, implementation, onednn}"
else fail_check "info --json compute"; fi

# compute.backend=amx by name: bf16 only; where the CPU has no AMX, an error naming the key.
expect_exit 2 "$EPMOE" info --set compute.backend=amx --set compute.dtype=fp32
expect_stderr_has "compute.dtype = \"fp32\": compute.backend amx runs bf16 only"
if [ "$bf16_kernel" = amx/bf16 ]; then
    expect_exit 0 "$EPMOE" info --set compute.backend=amx --set compute.dtype=bf16
    expect_stdout_has "compute: amx/bf16 (compute.backend = amx, compute.dtype = bf16)"
else
    expect_exit 2 "$EPMOE" info --set compute.backend=amx --set compute.dtype=bf16
    expect_stderr_has "compute.backend = \"amx\": AMX cannot run here"
fi

# compute.pack_weights=off: the runtime-M matmuls (no "packed" in the implementation, summary.json says off), the
# same outputs as packed to FP32 rounding; a bad value exits 2 naming the key.
expect_exit 2 "$EPMOE" info --set compute.pack_weights=no
expect_stderr_has "compute.pack_weights = \"no\": must be one of auto, off"
expect_one_error_line
for pack in auto off; do
    expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" run "${small[@]}" --steps 2 --tokens-per-rank 8 \
        --set compute.backend=onednn --set compute.pack_weights=$pack --out "$cli_tmp/pack-$pack" \
        --dump-output "$cli_tmp/pack-$pack.st"
done
if python3 -c "import json, sys
c = {p: json.load(open(sys.argv[1] + p + '/summary.json'))['compute'] for p in ('auto', 'off')}
assert c['off']['pack_weights'] == 'off' and 'packed' not in c['off']['implementation'], c['off']
assert c['auto']['pack_weights'] == 'auto', c['auto']" "$cli_tmp/pack-" &&
    python3 "$here/st_read.py" compare "$cli_tmp/pack-off.st" "$cli_tmp/pack-auto.st" >"$cli_tmp/cmp"; then
    pass "  compute.pack_weights=off: runtime-M kernel, outputs match packed: $(cat "$cli_tmp/cmp")"
else fail_check "compute.pack_weights=off: $(cat "$cli_tmp/cmp" 2>/dev/null)"; fi

# compute.weight_panel_kib: the packed FP32 kernel with its weights in column panels (64 KiB: W1|W3 of d_ff 80 in two
# panels) gives the outputs of the whole matrices to FP32 rounding; a value under 64, BF16 or a kernel that does not
# pack exits 2 naming the key.
expect_exit 2 "$EPMOE" info --set compute.weight_panel_kib=32
expect_stderr_has "compute.weight_panel_kib"
expect_one_error_line
expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" run "${small[@]}" --steps 1 --set compute.weight_panel_kib=64 \
    --set compute.dtype=bf16 --set compute.backend=onednn --out "$cli_tmp/bad"
expect_stderr_has "compute.weight_panel_kib = 64: compute.dtype is bf16"
expect_exit 2 "$EPMOE" info --set compute.weight_panel_kib=64 --set compute.backend=openblas
expect_stderr_has "compute.weight_panel_kib = 64"
if grep -q packed "$cli_tmp/pack-auto/summary.json"; then
    expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" run "${small[@]}" --steps 2 --tokens-per-rank 8 \
        --set compute.backend=onednn --set compute.weight_panel_kib=64 --out "$cli_tmp/panels" \
        --dump-output "$cli_tmp/panels.st"
    if grep -q '"weight_panel_kib": 64' "$cli_tmp/panels/summary.json" &&
        grep -q 'in panels of 64 KiB' "$cli_tmp/panels/summary.json" &&
        python3 "$here/st_read.py" compare "$cli_tmp/panels.st" "$cli_tmp/pack-auto.st" >"$cli_tmp/cmp"; then
        pass "  compute.weight_panel_kib=64: outputs match the whole matrices': $(cat "$cli_tmp/cmp")"
    else fail_check "compute.weight_panel_kib=64: $(cat "$cli_tmp/cmp" 2>/dev/null)"; fi
else
    expect_exit 2 "$EPMOE" info --set compute.weight_panel_kib=64
    expect_stderr_has "not its brgemm on this CPU"
fi

# 3. BF16 at 1-4 ranks: the same 12 global tokens give the 1-rank result (1e-5), with capacity drops.
for np in 1 2 3 4; do
    expect_exit 0 "${mpiexec[@]}" -np $np "$EPMOE" run "${small[@]}" --steps 2 --tokens-per-rank $((12 / np)) \
        --capacity-factor 1.0 --set compute.dtype=bf16 --out "$cli_tmp/bf$np" --dump-output "$cli_tmp/bf$np.st"
done
for np in 2 3 4; do
    if python3 "$here/st_read.py" compare "$cli_tmp/bf$np.st" "$cli_tmp/bf1.st" >"$cli_tmp/cmp"; then
        pass "  bf16: $np ranks match 1 rank: $(cat "$cli_tmp/cmp")"
    else fail_check "bf16: $np ranks differ from 1 rank: $(cat "$cli_tmp/cmp")"; fi
done

# 4. FP32 on the same tokens: BF16 within 1e-2 relative L2 of it, and its expert weights in half the bytes of FP32 as
# loaded (openblas/fp32 holds them so; onednn/fp32 packs them into its blocks, padded at d_ff 80), or, packed for
# oneDNN's brgemm too, between half and all of them.
expect_exit 0 "$EPMOE" run "${small[@]}" --steps 2 --tokens-per-rank 12 --capacity-factor 1.0 \
    --set compute.backend=openblas --out "$cli_tmp/fp1" --dump-output "$cli_tmp/fp1.st"
if python3 - "$here" "$cli_tmp" "$bf16_kernel" >"$cli_tmp/dev" 2>&1 <<'PY'
import json, math, os, sys
sys.path.insert(0, sys.argv[1])
from st_read import read
tmp = sys.argv[2]
(_, hb), (_, hf) = read(f"{tmp}/bf1.st")["hidden_states"], read(f"{tmp}/fp1.st")["hidden_states"]
rel = math.sqrt(sum((a - b) ** 2 for a, b in zip(hb, hf)) / sum(b * b for b in hf))
print(f"bf16 vs fp32 hidden_states rel L2 {rel:.3g}")
assert 1e-6 < rel < 1e-2, rel
sb, sf = (json.load(open(f"{tmp}/{d}/summary.json")) for d in ("bf1", "fp1"))
assert sb["compute"]["kernel"] == sys.argv[3] and sb["compute"]["backend"] == "auto", sb["compute"]
assert sf["compute"]["kernel"] in ("openblas/fp32", "onednn/fp32"), sf["compute"]
wb, wf = sb["memory"]["weight_bytes_per_rank"][0], sf["memory"]["weight_bytes_per_rank"][0]
experts = 2 * 8 * 3 * 48 * 80  # layers * experts * 3 matrices * d_model * d_ff
if sys.argv[3] == "onednn/bf16" and "packed" in sb["compute"]["implementation"]:
    # packed for oneDNN's brgemm, padded to its blocks at d_model 48, d_ff 80 (whole blocks give half: the unit
    # test Compute.Bf16HalvesWeightBytes): at least half of FP32's expert bytes, less than all of them
    bf16_experts = wb - (wf - experts * 4)
    assert experts * 2 <= bf16_experts < experts * 4, (wf, wb, bf16_experts)
elif sys.argv[3] == "onednn/bf16":  # 4 -> 2 bytes per expert weight; gates and norms stay FP32
    assert wf - wb == experts * 2, (wf, wb)
else:  # amx/bf16 pads each matrix to whole 16 x 32 tiles: d 48 -> 64, d_ff 80 -> 96 (2 bytes each)
    assert wf - wb == experts * 4 - 2 * 8 * 3 * 64 * 96 * 2, (wf, wb)
print(f"weight bytes fp32 {wf}, bf16 {wb}")
PY
then pass "  $(tr '\n' ';' <"$cli_tmp/dev")"
else fail_check "bf16 against fp32: $(tail -n 3 "$cli_tmp/dev")"; fi

# 5. --bind (resources.bind=core): each of 2 ranks bound to one core of its own, shown by info and summary.json.
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" info --bind --json
if python3 -c "import json, sys
j = json.load(open(sys.argv[1]))
assert j['bind'] == 'core', j['bind']
cpus = [b['cpus'] for b in j['bindings']]
assert len(cpus) == 2 and all(c and c != 'unknown' for c in cpus), cpus
if j['topology']['cores'] >= 2:
    assert cpus[0] != cpus[1], cpus  # distinct cores
    assert all(len(c.split(',')) == 1 for c in cpus), cpus  # one core each (its PUs: '3' or '2-3')" "$out_file"; then
    pass "  info --bind: one core per rank ($(python3 -c "import json,sys; print([b['cpus'] for b in json.load(open(sys.argv[1]))['bindings']])" "$out_file"))"
else fail_check "info --bind bindings"; fi
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" run "${small[@]}" --steps 1 --tokens-per-rank 8 --bind --out "$cli_tmp/bind"
if python3 -c "import json, sys
c = json.load(open(sys.argv[1]))['compute']
assert c['bind'] == 'core' and c['rank0_binding'].startswith('core(s) 0 '), c" "$cli_tmp/bind/summary.json"; then
    pass "  run --bind: summary.json compute.bind = core, rank 0 on core 0"
else fail_check "run --bind summary: $(cat "$cli_tmp/bind/summary.json" 2>&1 | head -c 300)"; fi
expect_exit 2 "$EPMOE" run "${small[@]}" --steps 1 --set resources.bind=socket --out "$cli_tmp/bad"
expect_stderr_has "resources.bind = \"socket\""

# 6. resources.expert_threads=tasks (the default): 2 threads run the experts as tasks and give the bits of 1
#    thread, for every kernel this CPU runs; summary.json says which split ran; a bad value exits 2.
expert_runs=(--steps 2 --tokens-per-rank 64 --set model.num_experts=8)
for kernel in openblas/fp32 onednn/fp32 onednn/bf16 auto/bf16; do
    set -- --set "compute.backend=${kernel%/*}" --set "compute.dtype=${kernel#*/}"
    name=${kernel/\//-}
    expect_exit 0 "$EPMOE" run "${small[@]}" "${expert_runs[@]}" "$@" --out "$cli_tmp/t1-$name" \
        --dump-output "$cli_tmp/t1-$name.st"
    expect_exit 0 "$EPMOE" run "${small[@]}" "${expert_runs[@]}" "$@" --set resources.threads_per_rank=2 \
        --out "$cli_tmp/t2-$name" --dump-output "$cli_tmp/t2-$name.st"
    if cmp -s "$cli_tmp/t1-$name.st" "$cli_tmp/t2-$name.st"; then
        pass "  $kernel: 2 threads as expert tasks give 1 thread's bits"
    else fail_check "$kernel: 2 threads (tasks) differ from 1 thread"; fi
done
if python3 -c "import json, sys
c = json.load(open(sys.argv[1]))['compute']
assert c['threads_per_rank'] == 2 and c['expert_threads'] == 'tasks', c" "$cli_tmp/t2-auto-bf16/summary.json"; then
    pass "  summary.json compute.expert_threads = tasks"
else fail_check "summary.json compute.expert_threads"; fi
expect_exit 2 "$EPMOE" run "${small[@]}" --steps 1 --set resources.expert_threads=rows --out "$cli_tmp/bad"
expect_stderr_has "resources.expert_threads = \"rows\""

# 7. resources.exchange: the shared-memory window and MPI_Alltoallv give the same bits at 3 ranks (with capacity
#    drops); under MPICH also with the ranks on two "hosts" (hydra's fork launcher takes localhost and 127.0.0.1
#    for two nodes, so MPI_COMM_TYPE_SHARED splits them: rows between them go through MPI, the rest through the
#    window); summary.json says which ran; shm with more than one chunk exits 2.
exchange_runs=(run "${small[@]}" --steps 2 --tokens-per-rank 48 --set model.num_experts=8
               --set routing.capacity_factor=1.0)
launches=("${mpiexec[*]} -np 3")
[ "${EPMOE_MPI_FLAVOR:-}" = mpich ] && launches+=("mpiexec.mpich -launcher fork -hosts localhost:2,127.0.0.1:1 -n 3")
for i in "${!launches[@]}"; do
    read -r -a launch <<<"${launches[$i]}"
    for exchange in mpi shm; do
        expect_exit 0 "${launch[@]}" "$EPMOE" "${exchange_runs[@]}" --set resources.exchange=$exchange \
            --out "$cli_tmp/x$i-$exchange" --dump-output "$cli_tmp/x$i-$exchange.st"
    done
    if cmp -s "$cli_tmp/x$i-mpi.st" "$cli_tmp/x$i-shm.st"; then
        pass "  ${launches[$i]}: resources.exchange shm gives mpi's bits"
    else fail_check "${launches[$i]}: resources.exchange shm and mpi differ"; fi
done
# resources.inter_host = two_level (the exchange inside each host, then one message a rank to its counterpart on
# each other host) gives flat's bits: at 4 ranks on this host, and under MPICH on two hosts of 2; hosts of unequal
# size are refused (exit 2, one line); two_level with shm is a config error.
[ "${EPMOE_MPI_FLAVOR:-}" = mpich ] && launch=(mpiexec.mpich -launcher fork -hosts localhost:2,127.0.0.1:2 -n 4)
[ "${EPMOE_MPI_FLAVOR:-}" = mpich ] || launch=("${mpiexec[@]}" -np 4)
for level in flat two_level; do
    expect_exit 0 "${launch[@]}" "$EPMOE" "${exchange_runs[@]}" --set resources.exchange=mpi \
        --set resources.inter_host=$level --out "$cli_tmp/l-$level" --dump-output "$cli_tmp/l-$level.st"
done
if cmp -s "$cli_tmp/l-flat.st" "$cli_tmp/l-two_level.st"; then
    pass "  ${launch[*]}: resources.inter_host two_level gives flat's bits"
else fail_check "${launch[*]}: two_level and flat differ"; fi
# per_rank.sent_bytes_off_host, summed over ranks and steps: the same rows cross hosts either way (none on one host).
off_flat=$(sent_bytes "$cli_tmp/l-flat/metrics.jsonl" off_host)
off_two=$(sent_bytes "$cli_tmp/l-two_level/metrics.jsonl" off_host)
[ "$off_flat" = "$off_two" ] && pass "  bytes between hosts: two_level = flat ($off_flat)" ||
    fail_check "bytes between hosts: two_level $off_two, flat $off_flat"
if [ "${EPMOE_MPI_FLAVOR:-}" = mpich ]; then
    [ "$off_flat" -gt 0 ] && pass "  two hosts: $off_flat bytes between them" || fail_check "two hosts: no bytes between them"
else
    [ "$off_flat" = 0 ] && pass "  one host: no bytes between hosts" || fail_check "one host: $off_flat bytes between hosts"
    [ "$(sent_bytes "$cli_tmp/l-flat/metrics.jsonl" on_host)" -gt 0 ] && pass "  one host: bytes inside it" ||
        fail_check "one host: no bytes inside it"
fi
if [ "${EPMOE_MPI_FLAVOR:-}" = mpich ]; then
    expect_exit 2 mpiexec.mpich -launcher fork -hosts localhost:2,127.0.0.1:1 -n 3 "$EPMOE" "${exchange_runs[@]}" \
        --set resources.inter_host=two_level --out "$cli_tmp/bad"
    expect_stderr_has "resources.inter_host = two_level: every host must hold the same number of ranks"
    expect_one_error_line  # every rank agrees: no MPI_Abort racing the message (it was cut short once in CI)
fi
expect_exit 2 "$EPMOE" run "${small[@]}" --steps 1 --set resources.exchange=shm --set resources.inter_host=two_level \
    --out "$cli_tmp/bad"
expect_stderr_has "config key resources.inter_host = \"two_level\": moves one chunk through MPI"
expect_one_error_line
if python3 -c "import json, sys
assert json.load(open(sys.argv[1]))['compute']['exchange'] == 'shm'" "$cli_tmp/x0-shm/summary.json"; then
    pass "  summary.json compute.exchange = shm"
else fail_check "summary.json compute.exchange"; fi
expect_exit 2 "$EPMOE" run "${small[@]}" --steps 1 --set resources.exchange=shm --set compute.overlap_chunks=2 \
    --out "$cli_tmp/bad"
expect_stderr_has "config key resources.exchange = \"shm\": moves one chunk; compute.overlap_chunks = 2 needs"
expect_one_error_line

finish
