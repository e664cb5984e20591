#!/usr/bin/env bash
# Set up everything TextSegment needs on a fresh machine, into .venv at the repository root. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# Real labelled data used by the tests, the demo and training (Debian packages; skipped when not root/apt).
need_deb=""
for pkg in mricron-data invesalius-examples; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_deb="$need_deb $pkg"
done
if [ -n "$need_deb" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    echo "[setup] installing Debian packages:$need_deb"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need_deb >/dev/null
  else
    echo "[setup] warning: could not install$need_deb (needs root and apt-get); tests that use them will fail" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.textsegment-setup
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
  echo "[setup] installing Python packages (first time: a few minutes)"
  # CPU build of torch first, so that nothing pulls a multi-GB CUDA build.
  .venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install -q --disable-pip-version-check "torch==2.13.0"
  .venv/bin/pip install -q --disable-pip-version-check -e ".[test,training]"
  touch "$stamp"
fi
echo "[setup] ready: $(.venv/bin/python -c 'import torch, TextSegmentLib; print("TextSegmentLib", TextSegmentLib.__version__, "torch", torch.__version__)')"
