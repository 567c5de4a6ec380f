#!/usr/bin/env bash
# Set up sinonom-retrieval on a fresh Debian machine:
#   1. system packages: CJK fonts with Nom coverage, libraries open3d / opencv need, Unihan data;
#   2. a virtual environment at .venv/ in the repo root with the project and its extras.
# Idempotent: re-running skips what is already there. Needs root (or sudo) for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

FONT_PACKAGES=(
  fonts-hanazono fonts-cns11643-sung fonts-cns11643-kai fonts-babelstone-han
  fonts-noto-cjk fonts-noto-cjk-extra fonts-arphic-uming fonts-arphic-ukai
  fonts-lxgw-wenkai fonts-wqy-zenhei fonts-cwtex-ming fonts-cwtex-kai fonts-cwtex-heib
  fonts-cwtex-yen fonts-cwtex-fs fonts-ipamj-mincho fonts-kouzan-mouhitsu
)
# libusb: open3d's import needs it; libgl1/libglib2.0-0: opencv (pulled in by ultralytics);
# unicode-data: Unihan (Unihan_*.txt.bz2), source of the shipped charsets (scripts/build_charsets.py).
SYSTEM_PACKAGES=(libusb-1.0-0 libgl1 libglib2.0-0 libgomp1 unicode-data fontconfig)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
missing=()
for p in "${FONT_PACKAGES[@]}" "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
# open3d ships a CPU-only wheel as open3d-cpu on x86-64 Linux; elsewhere the plain open3d wheel.
EXTRAS="dev"
if [ "$(uname -m)" = "x86_64" ] && [ "$(uname -s)" = "Linux" ]; then EXTRAS="dev,cpu"; else EXTRAS="dev,open3d"; fi
if ! .venv/bin/python -c "import retrieval, datagen, index, eval" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  echo "[setup] pip install -e .[$EXTRAS] (first time: ~2 min, ~6 GB)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
  touch .venv/.installed
fi
echo "[setup] ready: $(.venv/bin/python -c 'import torch, faiss, open3d; print("torch", torch.__version__, "| faiss", faiss.__version__, "| open3d", open3d.__version__)')"
