"""Test-wide set-up. Monkey-patching comes first, as in pilot.py."""
from gevent import monkey

monkey.patch_all()
