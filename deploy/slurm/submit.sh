#!/usr/bin/env bash
# Submits one sharded qpsbench run to Slurm: the array job (one task per shard, all starting
# at one instant) and the merge job after it.
#
#   QPSBENCH_API_KEY=... deploy/slurm/submit.sh SHARDS START_IN_S RESULTS_DIR -- <qpsbench flags>
#
# SHARDS: array tasks (shards); START_IN_S: seconds from now to the first level, enough for
# every task to be scheduled and started; RESULTS_DIR: a folder every node can write. The key
# is passed in the environment (sbatch exports it to the jobs), never on a command line.
# Prints the two job ids: "ARRAY_JOB MERGE_JOB".
set -euo pipefail

if [[ $# -lt 4 || "$4" != "--" ]]; then
  echo "usage: $0 SHARDS START_IN_S RESULTS_DIR -- <qpsbench flags>" >&2
  exit 2
fi
shards=$1 start_in=$2 results=$3
shift 4
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$results"
export QPSBENCH_RESULTS=$(cd "$results" && pwd)
export QPSBENCH_START_AT=$(( $(date +%s) + start_in ))
array=$(sbatch --parsable --array="0-$((shards - 1))" --chdir="$QPSBENCH_RESULTS" \
  "$here/qpsbench-array.sbatch" "$@")
array=${array%%;*}
merge=$(sbatch --parsable --dependency="afterany:$array" --chdir="$QPSBENCH_RESULTS" \
  "$here/qpsbench-merge.sbatch")
echo "$array ${merge%%;*}"
