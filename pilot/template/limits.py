"""Bounds on one render, so a config cannot make Pilot loop or grow for ever."""

MAX_LOOP = 100_000             # elements one `loop` call may produce
MAX_DEPTH = 50                 # nesting while parsing; nested {{template}} calls
MAX_STEPS = 2_000_000          # nodes walked plus functions called in one render
MAX_OUTPUT = 64 * 1024 * 1024  # characters one render may produce
