"""Pack a PyInstaller onedir tree behind build/launcher.c: `pack.py LAUNCHER TREE OUT`.

The format is described at the top of build/launcher.c. The build id is a hash of the
packed contents, so a running Pilot's unpacked tree is reused only by the same build.
"""
import hashlib
import os
import stat
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

MAGIC = b"PILOTBUNDLE3"
ID_SIZE = 24


def entries(tree):
    """Yield (type, mode, relative path, data) for every entry, parents first."""
    for root, dirs, files in os.walk(tree):
        dirs.sort()
        for name in dirs + sorted(files):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, tree)
            info = os.lstat(full)
            if stat.S_ISLNK(info.st_mode):
                yield b"l", 0o777, rel, os.readlink(full).encode()
            elif stat.S_ISDIR(info.st_mode):
                yield b"d", 0o700, rel, b""
            else:
                with open(full, "rb") as f:
                    yield b"f", stat.S_IMODE(info.st_mode) | 0o600, rel, f.read()


# Unpacked side by side by the launcher, one thread each. On two shared cores, one frame
# took 188 ms from exec to the first job, two frames 160 ms.
FRAMES = 2


def record(kind, mode, rel, data):
    path = rel.encode()
    return kind + struct.pack("<IIQ", mode, len(path), len(data)) + path + data


def split(tree, frames=FRAMES):
    """Return `frames` lists of records of about equal size. Every list starts with
    every directory, so that each frame can be unpacked on its own."""
    dirs, files = [], []
    for kind, mode, rel, data in entries(tree):
        (dirs if kind == b"d" else files).append(record(kind, mode, rel, data))
    groups = [list(dirs) for _ in range(frames)]
    sizes = [0] * frames
    for rec in sorted(files, key=len, reverse=True):
        lightest = sizes.index(min(sizes))
        groups[lightest].append(rec)
        sizes[lightest] += len(rec)
    return groups


def compress(raw):
    """One zstd frame (level 19): decompresses ~4x faster than zlib and is smaller.
    The content size goes in the frame header."""
    command = ["zstd", "-19", "-q", "-c", f"--stream-size={len(raw)}"]
    return subprocess.run(command, input=raw, stdout=subprocess.PIPE, check=True).stdout


def main(launcher, tree, out):
    groups = split(tree)
    raws = [b"".join(group) for group in groups]
    with ThreadPoolExecutor(len(raws)) as pool:
        packs = list(pool.map(compress, raws))
    payload = b"".join(struct.pack("<QQ", len(packed), len(group)) + packed
                       for group, packed in zip(groups, packs))
    unpacked = sum(map(len, raws))
    build_id = hashlib.sha256(b"".join(raws)).hexdigest()[:ID_SIZE].encode()
    with open(launcher, "rb") as f:
        head = f.read()
    trailer = MAGIC + struct.pack("<IQQQ", len(groups), len(head), len(payload),
                                  unpacked) + build_id
    assert len(trailer) == 64
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(head + payload + trailer)
    os.chmod(tmp, 0o755)
    os.replace(tmp, out)
    print(f"{out}: {len(head) + len(payload) + 64} bytes "
          f"({len(groups)} frames, {sum(map(len, groups))} entries, {unpacked} unpacked)")


if __name__ == "__main__":
    main(*sys.argv[1:4])
