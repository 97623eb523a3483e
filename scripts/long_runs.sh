#!/usr/bin/env bash
# The long studies, resumable across sessions: start this again in each session (a finished run
# is never repeated; an interrupted one is redone from its start). Plans and minutes:
# docs/comparison.md (the comparison, issue 27) and docs/students.md (the larq-zoo students,
# issue 29). Every run key hashes the code version: start it only when burn_tf/ is final.
#   bash scripts/long_runs.sh            start (or resume) in the background; logs in
#                                        benchmarks/results/<study>/logs/
#   bash scripts/long_runs.sh status     the tables of the runs logged so far, running nothing
set -euo pipefail
cd "$(dirname "$0")/.."
# Niced: the studies take the CPU the interactive work and the tests leave.
PY="nice -n 10 .venv/bin/python"
STUDENTS=benchmarks/results/students
COMPARE=benchmarks/results/compare_v2
if [ "${1:-start}" = status ]; then
  .venv/bin/python -m burn_tf.studies.compare --preset full --report --out $COMPARE
  exit 0
fi
mkdir -p $STUDENTS/logs $COMPARE/logs
stamp=$(date -u +%Y%m%dT%H%M%S)
# Three processes on the 2-core machine: the students study, then the second half of the
# comparison's rows, beside the first half (disjoint rows, one run log).
nohup bash -c "$PY -m burn_tf.studies.students --preset full --out $STUDENTS \
  && $PY -m burn_tf.studies.compare --preset full --rows supervised,byol,moco_v2,simclr_v2,swav,infomin,npid,cld --out $COMPARE" \
  > $STUDENTS/logs/$stamp.log 2>&1 &
nohup $PY -m burn_tf.studies.compare --preset full --rows burn,random,s2bnn,supervised_kl --out $COMPARE \
  > $COMPARE/logs/$stamp.log 2>&1 &
echo "started; logs: $STUDENTS/logs/$stamp.log $COMPARE/logs/$stamp.log"
