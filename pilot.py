"""Run Pilot from a checkout: `python pilot.py -config FILE`.

Monkey-patching must come before anything else imports socket, subprocess or
threading: bottle's request objects and python-consul2's sockets rely on it.
"""
from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

from pilot.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
