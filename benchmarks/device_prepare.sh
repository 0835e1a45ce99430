#!/usr/bin/env bash
# Fills .device_carry/ (git-ignored) with what benchmarks/device_run.sh needs on a bare
# GPU machine without a network (Python 3.12, torch and torchvision preinstalled):
#   wheels/        timm (DomainBed's networks import it), pytest and its dependencies,
#                  setuptools and wheel (installed there only where missing or too old);
#                  the versions installed here, pure-Python wheels for Python 3.12
#   DomainBed/     domainbed/ at the pinned commit, from the checkout the project finds here
#   fashion-mnist/ the training split's IDX files (the only split Colored MNIST reads)
#   COMMIT         this checkout's commit, for the record
# Usage: benchmarks/device_prepare.sh [CARRY_DIR]   (needs the pip registry, nothing else)
# Fails if the folder is over 64 MiB, the device tool's limit on carried paths.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY="${1:-.device_carry}"
FASHION="${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"
LIMIT=$((64 * 1024 * 1024))

rm -rf "$CARRY"
mkdir -p "$CARRY/wheels" "$CARRY/DomainBed" "$CARRY/fashion-mnist"

pins=$(python - <<'PY'
from importlib import metadata
names = ["timm", "pytest", "pluggy", "iniconfig", "pygments", "packaging", "setuptools",
         "wheel"]
pins = []
for name in names:
    try:
        pins.append(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        pins.append(name)
print(" ".join(pins))
PY
)
echo "wheels: $pins"
# shellcheck disable=SC2086
python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation py --platform any -d "$CARRY/wheels" $pins

root=$(python -c "from domainbed_patch.locate import locate; l = locate(); \
print(l.root if l.commit == '$(python -c "from domainbed_patch.locate import PINNED_COMMIT; print(PINNED_COMMIT)")' else '')")
if [ -z "$root" ]; then
  echo "DomainBed at the pinned commit not found here: run hessian-dg setup first" >&2
  exit 1
fi
tar -C "$root" --exclude=__pycache__ -cf - domainbed | tar -C "$CARRY/DomainBed" -xf -
python -c "from domainbed_patch.locate import PINNED_COMMIT; print(PINNED_COMMIT)" \
  > "$CARRY/DomainBed/HESSIAN_DG_COMMIT"

for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz; do
  if ! [ -f "$FASHION/$f" ]; then
    echo "$FASHION/$f missing: apt-get install dataset-fashion-mnist, or set FASHION_MNIST_DIR" >&2
    exit 1
  fi
  cp "$FASHION/$f" "$CARRY/fashion-mnist/"
done

echo "$(git rev-parse HEAD 2>/dev/null || echo unknown) ($(git status --short 2>/dev/null \
  | grep -vc '^??' || true) tracked files changed)" > "$CARRY/COMMIT"

size=$(du -sb "$CARRY" | cut -f1)
du -sh "$CARRY"/*
echo "total: $size bytes ($((size / 1024 / 1024)) MiB) in $CARRY; limit $LIMIT"
if [ "$size" -gt "$LIMIT" ]; then
  echo "$CARRY is over 64 MiB: it cannot be carried" >&2
  exit 1
fi
