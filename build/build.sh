#!/usr/bin/env bash
# Build dist/pilot: one static file that runs Pilot even in a FROM-scratch image.
#   1. PyInstaller builds a lean onedir tree (build/pilot.spec).
#   2. glibc (loader + libs) is added to it; the bootloader's interpreter becomes a
#      placeholder that build/launcher.c rewrites after unpacking.
#   3. build/pack.py appends the tree, compressed, to the static launcher.
# Installs what it needs when missing. PILOT_ENTRY overrides the entry script.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
CACHE=$ROOT/.cache/pyinstaller
TREE=$CACHE/dist/pilot
OUT=$ROOT/dist/pilot
export PILOT_ENTRY=${PILOT_ENTRY:-$ROOT/pilot.py}
# Room for "$TMPDIR/pilot-XXXXXX/_internal/ld-linux-x86-64.so.2" at run time.
export PILOT_INTERP="/$(printf 'p%.0s' $(seq 1 250))"

need_apt() {  # need_apt PACKAGE TEST...: install PACKAGE unless TEST succeeds
    local pkg=$1; shift
    "$@" >/dev/null 2>&1 && return 0
    echo "build: installing $pkg" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null; }
}

need_apt patchelf command -v patchelf
need_apt gcc command -v gcc
need_apt libc6-dev test -f /usr/lib/x86_64-linux-gnu/libc.a
need_apt libzstd-dev test -f /usr/lib/x86_64-linux-gnu/libzstd.a
need_apt zstd command -v zstd
"$PY" -c 'import PyInstaller' 2>/dev/null ||
    "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check 'pyinstaller>=6,<7'

mkdir -p "$CACHE" "$ROOT/dist"
gcc -static -Os -s -Wall -Wextra -Wno-format-truncation -o "$CACHE/launcher" build/launcher.c -lzstd -pthread

# The bundle is zstd-compressed as a whole: PyInstaller's own per-module zlib would only
# cost time at every import (a client call reusing the unpacked tree starts ~7 ms sooner).
# Its work cache does not notice this setting, hence --clean.
export PYINSTALLER_ZLIB_COMPRESSION_LEVEL=0
"$PY" -m PyInstaller --noconfirm --clean --log-level ERROR \
    --distpath "$CACHE/dist" --workpath "$CACHE/work" build/pilot.spec

# glibc is the one thing PyInstaller leaves out; a scratch image has none.
LD_LIBRARY_PATH=$TREE/_internal find "$TREE" -type f \( -name '*.so*' -o -name pilot \) \
        -exec ldd {} \; 2>/dev/null |
    grep -o '/[^ ]*' | grep -v "^$TREE" | sort -u |
    while read -r lib; do cp -L "$lib" "$TREE/_internal/$(basename "$lib")"; done
test -f "$TREE/_internal/ld-linux-x86-64.so.2"
patchelf --set-interpreter "$PILOT_INTERP" --set-rpath '$ORIGIN/_internal' "$TREE/pilot"

"$PY" build/pack.py "$CACHE/launcher" "$TREE" "$OUT"
