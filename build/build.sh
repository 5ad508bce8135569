#!/usr/bin/env bash
# Build dist/pilot: one static file that runs Pilot even in a FROM-scratch image.
#   1. PyInstaller's analysis finds Pilot's modules; build/pilot.spec lays them out
#      around the system's python3.11 as a small Python install.
#   2. glibc (loader + libs) is added to it; python3.11's ELF interpreter becomes a
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
# Room for "$TMPDIR/pilot-XXXXXX/lib/ld-linux-x86-64.so.2" at run time.
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
gcc -static -Os -s -Wall -Wextra -Wno-format-truncation -o "$CACHE/launcher" build/launcher.c \
    build/fastcall.c -lzstd -pthread

# PyInstaller only analyses imports; build/pilot.spec lays out the tree (see its header).
"$PY" -m PyInstaller --noconfirm --clean --log-level ERROR \
    --distpath "$CACHE/dist" --workpath "$CACHE/work" build/pilot.spec

# glibc and the interpreter's own libraries: a scratch image has none.
LD_LIBRARY_PATH=$TREE/lib find "$TREE" -type f \( -name '*.so*' -o -name pilot \) \
        -exec ldd {} \; 2>/dev/null |
    grep -o '/[^ ]*' | grep -v "^$TREE" | sort -u |
    while read -r lib; do cp -L "$lib" "$TREE/lib/$(basename "$lib")"; done
test -f "$TREE/lib/ld-linux-x86-64.so.2"
find "$TREE/lib/site" -name '*.so' -exec strip --strip-unneeded {} +
# DT_RPATH (not RUNPATH): it comes before a user's LD_LIBRARY_PATH and also serves the
# libraries that extension modules load, so Pilot never picks up a foreign libc.
patchelf --set-interpreter "$PILOT_INTERP" --force-rpath --set-rpath '$ORIGIN/../lib' \
    "$TREE/bin/pilot"

"$PY" build/pack.py "$CACHE/launcher" "$TREE" "$OUT"
