#!/usr/bin/env bash
# Runs the unit suite under valgrind memcheck (CPU backend, debug build in build/memcheck): any invalid read or
# write, use of uninitialised memory, invalid free or definitely lost block fails the test that caused it.
# Usage: scripts/memcheck.sh [REGEX [EXCLUDE]]   the tests ctest -R REGEX -E EXCLUDE selects, e.g.
#        scripts/memcheck.sh 'Checkpoint|Dataset'
# Slow: valgrind runs code 20-50x slower; the whole unit suite takes about an hour on two cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if ! command -v valgrind >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi
scripts/install-deps.sh
cmake -S . -B build/memcheck -DCMAKE_BUILD_TYPE=Debug -DDYNRL_CUDA=OFF >/dev/null
cmake --build build/memcheck -j"$(nproc)"
# Threads of OpenMP's pool and of MPI's progress engine are still alive at exit: "possibly lost" is their stacks.
opts="--tool=memcheck --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-possibly-lost=no"
opts+=" --track-origins=yes --suppressions=$root/scripts/valgrind.supp --gen-suppressions=all"
regex=${1:-.}
exclude=${2:-^$}
# valgrind's report of test N: build/memcheck/Testing/Temporary/MemoryChecker.N.log.
ctest --test-dir build/memcheck -L unit -R "$regex" -E "$exclude" -j"$(nproc)" --timeout 3600 --output-on-failure \
  --overwrite MemoryCheckCommand="$(command -v valgrind)" --overwrite MemoryCheckCommandOptions="$opts" \
  -T memcheck
