#!/usr/bin/env bash
# On the device (16 Xeon cores, Ubuntu 24.04, Open MPI 4.1.6): epmoe compare --mode eval of --policy ttt (budget 2 %)
# against aux_free and prev_batch at 8 and 4 ranks, one core each, on bench/run.sh --only ttt's model and drifting
# stream. build-dev/ (gitignored, carried): bin/epmoe (this Debian build), libs.tar.xz (its libraries, dpkg -x'd),
# ttt/model and ttt/drift.bin (copied from `bench/run.sh --only ttt --keep DIR`'s DIR/ttt). Run from the repo root
# with OUT set (the device tool's $OUT).
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
mpirun --version | head -1 >> $OUT/cpu.txt
common=(--mode eval --model $d/ttt/model --tokens $d/ttt/drift.bin --token-dtype uint16 --ctx 128 --batch 4 --repeats 3)
for np in 8 4; do
  mpirun --allow-run-as-root --oversubscribe -np $np --bind-to core $d/bin/epmoe compare "${common[@]}" \
    --set policy.ttt.max_delta_ppl=0.02 --pairs ttt/contiguous,aux_free/contiguous,prev_batch/contiguous \
    --out /tmp/cmp$np > $OUT/compare$np.md 2> $OUT/compare$np.err
  cp /tmp/cmp$np/compare.csv $OUT/compare$np.csv
  python3 - /tmp/cmp$np >> $OUT/compare$np.md <<'PY'
import json, sys, glob
for d in sorted(glob.glob(sys.argv[1] + "/ttt-contiguous-r*")):
    t = json.load(open(d + "/eval.json"))["ttt"]
    print(d.split("/")[-1], "shrinks", t["shrinks"], "deltas", [round(c["delta"], 4) for c in t["checks"]])
PY
done
tail -2 $OUT/compare8.err
cat $OUT/cpu.txt $OUT/compare8.md $OUT/compare4.md
