#!/usr/bin/env bash
# Single-thread encode throughput of dynrl's byte-level BPE against Hugging Face tokenizers, on the same corpus and
# tokenizer.json files (tests/fixtures/tokenizer), in one run: bench_tokenizer, then tokenizers from Python with one
# thread (RAYON_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false), both line by line (encode per line) and in one
# encode_batch call. Prints each figure and dynrl's ratio to HF's faster way.
# Usage: bench/tokenizer_compare.sh [REPEAT]      (default 50 passes over the corpus)
#   BUILD   build directory holding bench/bench_tokenizer (default build/cpu)
#   PYTHON  an interpreter with tokenizers (default .venv/bin/python:
#           scripts/install-deps.sh --python && .venv/bin/pip install tokenizers)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
repeat=${1:-50}
build=${BUILD:-build/cpu}
python=${PYTHON:-.venv/bin/python}
fixtures=tests/fixtures/tokenizer

ours=$("$build/bench/bench_tokenizer" --dir "$fixtures" --repeat "$repeat")
echo "$ours" | grep -v '^encode '
theirs=$(RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false "$python" - "$fixtures" "$repeat" <<'PY'
import json, sys, time
import tokenizers
from tokenizers import Tokenizer
d, repeat = sys.argv[1], int(sys.argv[2])
lines = [json.loads(l) for l in open(d + "/corpus.jsonl", encoding="utf-8")]
nbytes = sum(len(l.encode()) for l in lines)
for name in ("qwen", "llama", "gpt2"):
    tok = Tokenizer.from_file("%s/%s/tokenizer.json" % (d, name))
    for l in lines:  # warm the cache as bench_tokenizer's first pass does
        tok.encode(l, add_special_tokens=False)
    t0 = time.perf_counter()
    for _ in range(repeat):
        for l in lines:
            tok.encode(l, add_special_tokens=False)
    single = nbytes * repeat / (time.perf_counter() - t0) / 1e6
    t0 = time.perf_counter()
    for _ in range(repeat):
        tok.encode_batch(lines, add_special_tokens=False)
    batch = nbytes * repeat / (time.perf_counter() - t0) / 1e6
    print("hf %s %.3f %.3f %s" % (name, single, batch, tokenizers.__version__))
PY
)
printf '| tokenizer | dynrl MB/s | HF encode MB/s | HF encode_batch MB/s (1 thread) | dynrl / best HF |\n'
printf '|---|---:|---:|---:|---:|\n'
while read -r _ name hf_single hf_batch version; do
  mine=$(echo "$ours" | awk -v n="$name" '$1 == "encode" && $2 == n {print $3}')
  awk -v n="$name" -v m="$mine" -v s="$hf_single" -v b="$hf_batch" \
    'BEGIN {best = s > b ? s : b; printf "| %s | %.1f | %.1f | %.1f | %.2fx |\n", n, m, s, b, m / best}'
done <<<"$theirs"
echo
echo "HF tokenizers $(echo "$theirs" | awk 'NR == 1 {print $5}'), RAYON_NUM_THREADS=1"
