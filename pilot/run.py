"""Supervisor mode: load the config, run the App, leave nothing behind."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict

from gevent import monkey

from pilot import config
from pilot import log as pilot_log
from pilot import supervisor
from pilot.errors import ConfigError
from pilot.frozen import clean_environ

log = logging.getLogger("pilot")


def run(path: str) -> int:
    """Run Pilot as the container's init; returns the exit status."""
    supervisor.become_subreaper()
    _clean_frozen_environ()
    pilot_log.configure()
    cfg = config.load(path, os.environ)
    try:
        pilot_log.configure(cfg.logging)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ConfigError(f"Error initializing log file '{cfg.logging.output}': {reason}",
                          file=path, path="logging.output") from None
    log.debug("loaded config: %s", dump_config(cfg))
    _patch_ssl_if_needed(cfg)
    # After the ssl decision: the components (requests, for Consul) import
    # ssl, which gevent must patch before anyone imports it.
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
        if not monkey.is_module_patched("ssl"):
            monkey.patch_ssl()


def _clean_frozen_environ() -> None:
    """Jobs get the environment the user gave, not the bootloader's."""
    cleaned = clean_environ(os.environ)
    for k in list(os.environ):
        if k not in cleaned:
            del os.environ[k]
    os.environ.update(cleaned)


def dump_config(cfg) -> str:
    """`loaded config: ...` for the DEBUG log; tokens and env values are
    never included (a job's env shows its names and secret files only)."""
    doc = asdict(cfg)
    if doc.get("consul"):
        doc["consul"].pop("token", None)
        doc["consul"].pop("auth", None)
    for job in doc.get("jobs", ()):
        job["launch"]["env"] = [[name, value if isinstance(value, dict) else "(hidden)"]
                                for name, value in job["launch"]["env"]]
    return json.dumps(doc, default=str, sort_keys=True)
