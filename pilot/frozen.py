"""What running as the one-file executable changes, and how to undo it for jobs.

dist/pilot (build/launcher.c) runs a bundled python3.11 whose DT_RPATH finds its own
libraries, so it adds nothing to Pilot's environment but PILOT_BUNDLE: the directory
the running Pilot was unpacked into, kept for jobs, so that `/pilot -putmetric ...` run
by a job starts from there instead of unpacking the whole program again (see
build/README.md).

A PyInstaller-built executable (sys.frozen set) does add variables so that Python
finds its bundled libraries; jobs must see the environment the user gave, or a job's
/bin/sh would load Pilot's bundled glibc. clean_environ undoes those.
"""
import os
import sys
from typing import Mapping, Optional

BUNDLE_VARIABLE = "PILOT_BUNDLE"

# The bootloader saves the user's value under NAME_ORIG before prepending its own path.
_RESTORED = ("LD_LIBRARY_PATH", "LIBPATH")
_BOOTLOADER_PREFIXES = ("_PYI_", "_MEI", "STATICX_")


def is_frozen() -> bool:
    """True when running from the bundled executable rather than a Python checkout."""
    return bool(getattr(sys, "frozen", False))


def bundle() -> Optional[str]:
    """The unpacked copy this interpreter runs from (PILOT_BUNDLE, set by the
    launcher), or None: run from a checkout, or given a PILOT_BUNDLE that is
    another process's copy (a job of a dist/pilot running `python pilot.py`)."""
    path = os.environ.get(BUNDLE_VARIABLE)
    if not path or not os.path.isabs(path):
        return None
    inside = os.path.realpath(sys.executable).startswith(os.path.realpath(path) + os.sep)
    return path if inside else None


def clean_environ(env: Mapping[str, str]) -> dict:
    """Return env as the user gave it: bootloader additions dropped, saved values restored.

    Outside the executable the environment is returned unchanged (as a copy), so a
    checkout run never loses a user's LD_LIBRARY_PATH_ORIG.
    """
    cleaned = dict(env)
    if not is_frozen():
        return cleaned
    for name in _RESTORED:
        original = cleaned.pop(name + "_ORIG", None)
        cleaned.pop(name, None)
        if original is not None:
            cleaned[name] = original
    for name in list(cleaned):
        if name.startswith(_BOOTLOADER_PREFIXES):
            del cleaned[name]
    return cleaned
