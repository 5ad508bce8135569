"""The demo's web app: serves a directory over HTTP, quietly.

Usage: python web.py PORT DIRECTORY

No line per request (an access log would drown what Pilot says: the health
check alone asks every two seconds); one line when it starts, and one when
Pilot stops it (SIGTERM) with how many requests it answered. It then exits 0,
as a well-behaved app does when asked to stop.
"""
import functools
import http.server
import signal
import sys


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    answered = 0

    def log_request(self, code="-", size="-"):
        QuietHandler.answered += 1  # counted, not logged

    def log_error(self, format, *args):
        sys.stderr.write("web: " + (format % args) + "\n")


def main() -> int:
    port, directory = int(sys.argv[1]), sys.argv[2]
    handler = functools.partial(QuietHandler, directory=directory)
    server = http.server.HTTPServer(("127.0.0.1", port), handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"serving {directory} at http://127.0.0.1:{port}/ (no access log)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        print(f"stopping: answered {QuietHandler.answered} requests", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
