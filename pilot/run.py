"""Supervisor mode: load the config, run the App, leave nothing behind."""
from __future__ import annotations

import logging
import os

from pilot import log as pilot_log
from pilot import supervisor
from pilot.errors import ConfigError

log = logging.getLogger("pilot")


def run(path: str) -> int:
    """Run Pilot as the container's init; returns the exit status."""
    supervisor.become_subreaper()
    _clean_frozen_environ()
    pilot_log.configure()
    from pilot import config
    cfg = config.load(path, os.environ)
    try:
        pilot_log.configure(cfg.logging)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ConfigError(f"Error initializing log file '{cfg.logging.output}': {reason}",
                          file=path, path="logging.output") from None
    from pilot.cli import dump_config
    log.debug("loaded config: %s", dump_config(cfg))
    _patch_ssl_if_needed(cfg)
    from pilot.app import App, log_warnings
    log_warnings(cfg)
    app = App(cfg)
    supervisor.install_signal_handlers(app)
    try:
        code = app.run()
    finally:
        supervisor.kill_descendants()
    return code


def _patch_ssl_if_needed(cfg) -> None:
    """Make ssl cooperative for an https Consul, before anything imports it
    (pilot.py leaves ssl alone: most containers talk plain http to a local
    agent, and the patch costs memory)."""
    if cfg.consul is not None and cfg.consul.scheme == "https":
        from gevent import monkey
        if not monkey.is_module_patched("ssl"):
            monkey.patch_ssl()


def _clean_frozen_environ() -> None:
    """Jobs get the environment the user gave, not the bootloader's."""
    try:
        from pilot.frozen import clean_environ
    except ImportError:
        return
    cleaned = clean_environ(os.environ)
    for k in list(os.environ):
        if k not in cleaned:
            del os.environ[k]
    os.environ.update(cleaned)
