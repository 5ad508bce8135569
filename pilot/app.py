"""The App: builds every component from a Config, wires them to one bus,
runs them, and shuts them down in order.

Components never call each other: jobs, watches and servers publish and
subscribe on the bus this class creates. Optional parts (Consul, control
server, telemetry) are imported only when the config uses them.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from typing import Dict, List, Optional

import gevent
import gevent.event
import gevent.pool

from pilot import events as ev
from pilot.commands import Command, ExitStatus, pid_env_name
from pilot.config.model import Config, JobConfig
from pilot.events import Bus, Event, Timers
from pilot import jobs
from pilot.jobs import Job

log = logging.getLogger("pilot")

FORCE_AFTER = 1.0  # seconds: a repeated signal sooner than this is a duplicate


def ip_env_name(job_name: str) -> str:
    return "CONTAINERPILOT_" + job_name.upper().replace("-", "_") + "_IP"


def exit_events(name: str, status: ExitStatus) -> List[Event]:
    """What a finished exec publishes (SPEC §9.9)."""
    if status.success:
        return [Event(ev.EXIT_SUCCESS, name)]
    if status.error is not None:  # never started: 3.8 reports the bare error
        return [Event(ev.EXIT_FAILED, name), Event(ev.ERROR, status.error)]
    return [Event(ev.EXIT_FAILED, name), Event(ev.ERROR, f"{name}: {status.reason}")]


def stop_order(jobs) -> Dict[str, frozenset]:
    """For each job, the jobs its events start (hooks aside): at shutdown
    they stop first, so an app stops before the agent it was gated on.
    Two jobs started by each other's events wait for neither."""
    after: Dict[str, set] = {j.name: set() for j in jobs}
    for j in jobs:
        w = j.when
        if w.source in after and w.source != j.name and w.interval is None \
                and w.event not in (ev.STOPPING, ev.STOPPED):
            after[w.source].add(j.name)
    mutual = [(a, b) for a, deps in after.items() for b in deps if a in after.get(b, ())]
    for a, b in mutual:
        after[a].discard(b)
    return {k: frozenset(v) for k, v in after.items()}


def dependents(jobs) -> Dict[str, str]:
    """For each job, the job waited for when it halts: the last in config
    order whose trigger is that job's `stopping` (SPEC §9.7)."""
    out = {}
    for j in jobs:
        w = j.when
        if w.event == ev.STOPPING and w.source and w.interval is None:
            out[w.source] = j.name
    return out


def hooks_of(stopping, others) -> list:
    """The runners among `others` that are pre-/post-stop hooks of a job in
    `stopping`, transitively: on reload they stop with it (after running
    once more, as at shutdown) and come back fresh, armed for the new job."""
    found, names = [], {r.cfg.name for r in stopping}
    grew = True
    while grew:
        grew = False
        for r in others.values():
            if r.cfg.name not in names and is_stop_hook(r.cfg, names):
                found.append(r)
                names.add(r.cfg.name)
                grew = True
    return found


def is_stop_hook(cfg: JobConfig, of: set) -> bool:
    """True when the job runs on `stopping`/`stopped` of a job named in `of`."""
    w = cfg.when
    return w.source in of and w.interval is None and w.event in (ev.STOPPING, ev.STOPPED)


def log_warnings(cfg: Config) -> None:
    """What a config gets away with (3.8 loads it too), told once per load."""
    for warning in cfg.warnings:
        log.warning("%s: %s", cfg.path, warning)


class JobRunner:
    """A Job with its mailbox, timers, commands and greenlet."""

    def __init__(self, app: "App", cfg: JobConfig, dependent: Optional[str],
                 stop_after: frozenset = frozenset()):
        self.cfg = cfg
        self.bus = app.bus
        self.box = app.bus.subscribe(cfg.name)
        self.timers = Timers(self.box)
        process = check = None
        if cfg.exec:
            process = Command(cfg.name, cfg.exec, timeout=cfg.exec_timeout,
                              raw=cfg.raw_logging, environ=app.environ,
                              on_exit=lambda st: app.publish_exit(cfg.name, st),
                              interrupt=self.box.stop_ordered)
        if cfg.health and cfg.health.exec:
            h = cfg.health
            timeout = h.interval if h.timeout is None else h.timeout
            check = Command(f"check.{cfg.name}", h.exec, timeout=timeout,
                            raw=h.raw_logging, field="check", environ=app.environ,
                            env_names=(pid_env_name("check"), pid_env_name(f"check_{cfg.name}")),
                            on_exit=lambda st: app.publish_exit(f"check.{cfg.name}", st))
        self.job = Job(cfg, publish=app.bus.publish, timers=self.timers,
                       process=process, check=check,
                       service=app.service_for(cfg), dependent=dependent,
                       kill_timeout=app.cfg.stop_timeout, stop_after=stop_after)
        self.greenlet: Optional[gevent.Greenlet] = None

    def start(self, group: gevent.pool.Group) -> None:
        self.job.begin()
        self.greenlet = group.spawn(self._loop)

    def _loop(self) -> None:
        try:
            while True:
                event = self.box.get()
                if self.box.stop_pending and event.code in ev.OVERTAKEN:
                    continue  # stale trigger: the job is about to stop
                if not self._handle(event):
                    break
        finally:
            self.timers.cancel_all()
            self.bus.unsubscribe(self.box)  # a complete job's mailbox must not grow

    def _handle(self, event: Event) -> bool:
        """One event; a bug met while handling it is logged on one line and
        the job goes on with the next event: the supervisor never dies of it."""
        try:
            return self.job.handle(event)
        except Exception as exc:  # noqa: BLE001 - keep supervising
            log.error("job %s: internal error on %s: %r", self.cfg.name, event, exc)
            return not self.job.complete

    def process_groups(self) -> List[Command]:
        return [c for c in (self.job.process, self.job.check) if c is not None]


class App:
    def __init__(self, cfg: Config, environ=None):
        self.cfg = cfg
        # Pilot's environment for its children (SPEC §15) is a dict of its
        # own, never os.environ: glibc's setenv keeps every value it is ever
        # given, so setting CONTAINERPILOT_<JOB>_PID on each run would grow
        # memory for as long as the container lives (~78 bytes per run).
        self.environ = dict(os.environ) if environ is None else environ
        self.bus = Bus()
        self.group = gevent.pool.Group()
        self.runners: Dict[str, JobRunner] = {}
        self.components: list = []
        self.exit_code = 0
        self.maintenance = False
        self._shutdown_started = False
        self._shutdown_at = 0.0
        self._stop_requested = gevent.event.Event()
        self._consul = None
        self._main = next((j.name for j in cfg.jobs if j.main), None)
        self.telemetry = None
        self.control = None
        self._reloading = gevent.event.Event()
        self._reloading.set()  # set = no reload in progress

    # -- building ---------------------------------------------------------

    @property
    def consul(self):
        """The Consul client, built on first use (only configs with consul)."""
        if self._consul is None and self.cfg.consul is not None:
            from pilot.discovery import Consul
            self._consul = Consul(self.cfg.consul)
        return self._consul

    def service_for(self, cfg: JobConfig):
        if not cfg.advertised or self.consul is None:
            return None
        from pilot.discovery import BackgroundService, ServiceDefinition
        return BackgroundService(ServiceDefinition(cfg, self.consul))

    def _build(self) -> None:
        deps, order = dependents(self.cfg.jobs), stop_order(self.cfg.jobs)
        for jc in self.cfg.jobs:
            self.runners[jc.name] = JobRunner(self, jc, deps.get(jc.name), order[jc.name])
        self._export_ips(self.cfg)
        self.control = self._control_server(self.cfg)
        self.components = self._optional_components(self.cfg)

    def _export_ips(self, cfg: Config) -> None:
        for jc in cfg.jobs:
            if jc.advertised and jc.ip:
                self.environ[ip_env_name(jc.name)] = jc.ip

    def _control_server(self, cfg: Config):
        try:
            from pilot import control
        except ImportError:
            return None
        return control.ControlServer(self, cfg.control.socket)

    def _optional_components(self, cfg: Config) -> list:
        """Telemetry first (others report to it), then watches."""
        comps = []
        self.telemetry = None
        if cfg.telemetry is not None:
            from pilot.telemetry import Telemetry
            self.telemetry = Telemetry(self, cfg.telemetry)
            comps.append(self.telemetry)
        if cfg.watches:
            from pilot.watches import Watch
            comps += [Watch(w, self.consul, self.bus, self) for w in cfg.watches]
        return comps

    # -- running ----------------------------------------------------------

    def run(self) -> int:
        """Run until every job is complete or a shutdown finishes."""
        self._build()
        self.bus.listen(self._watch_main)
        self._start_servers()
        for runner in self.runners.values():
            runner.start(self.group)
        self.bus.publish(ev.GLOBAL_STARTUP)
        self._wait_for_jobs()
        # SPEC §16.2: servers and watches stop (socket removed, telemetry
        # deregistered) before the grace period, not after it.
        for comp in reversed(self.components):
            comp.stop()
        if self.control is not None:
            self.control.stop()
        self._final_grace()
        return self._exit_status()

    def _start_servers(self) -> None:
        """Control socket first, then telemetry and watches. If one cannot
        start (telemetry's port taken), those already started are stopped
        before the error ends Pilot: no socket file is left behind."""
        started = []
        try:
            for server in ([self.control] if self.control is not None else []) + self.components:
                server.start()
                started.append(server)
        except BaseException:
            for server in reversed(started):
                server.stop()
            raise

    def _wait_for_jobs(self) -> None:
        while True:
            if not self.runners:
                self._stop_requested.wait()
            else:
                self.group.join()
            self._reloading.wait()
            if len(self.group):  # a reload started jobs meanwhile: wait for them too
                continue
            if self._shutdown_started or (
                    self.runners and all(r.job.complete for r in self.runners.values())):
                break
        if not self._shutdown_started:
            log.info("all jobs complete, shutting down")

    def publish_exit(self, name: str, status: ExitStatus) -> None:
        for e in exit_events(name, status):
            self.bus.publish(e)

    def _watch_main(self, e: Event) -> None:
        if self._main and e == Event(ev.STOPPED, self._main) and not self._shutdown_started:
            log.info("main job %s ended, shutting down", self._main)
            gevent.spawn(self.shutdown)

    def shutdown(self, signum: Optional[int] = None) -> None:
        """Graceful shutdown; a second signal during one forces exit.

        A second signal within FORCE_AFTER seconds of the first is the same
        request delivered twice (Ctrl-C reaches both the executable's
        launcher and Pilot, and the launcher forwards it): ignored."""
        now = time.monotonic()
        if self._shutdown_started:
            if signum is not None and now - self._shutdown_at >= FORCE_AFTER:
                log.warning("second %s: killing every process now", signal.Signals(signum).name)
                self.exit_code = 128 + signum
                self._kill_all(signal.SIGKILL)
                self.group.kill(block=False)
                self._stop_requested.set()
            return
        self._shutdown_started = True
        self._shutdown_at = now
        self.bus.publish(ev.GLOBAL_SHUTDOWN)
        self._stop_requested.set()

    def _final_grace(self) -> None:
        """SPEC §16.2 step 3, ending early once no job process remains."""
        timeout = self.cfg.stop_timeout
        if timeout > 0:
            log.debug("killing all processes in %d seconds", timeout)
            with gevent.Timeout(timeout, False):
                while any(c.group_alive() for r in self.runners.values()
                          for c in r.process_groups()):
                    gevent.sleep(0.02)
        for r in self.runners.values():
            for c in r.process_groups():
                if c.group_alive():
                    log.info('killing processes for job "%s"', r.cfg.name)
                    c.signal(signal.SIGKILL)

    def _kill_all(self, sig: int) -> None:
        for r in self.runners.values():
            for c in r.process_groups():
                c.signal(sig)

    def _exit_status(self) -> int:
        if self.exit_code:
            return self.exit_code
        main = self.runners.get(self._main) if self._main else None
        cmd = main.job.process if main is not None else None
        if cmd is not None:
            try:
                st = cmd.wait(timeout=1)  # its exit may still be on its way
            except gevent.Timeout:
                st = cmd.last_status
            if st is not None:
                return st.shell_code
        return 0

    # -- reload -------------------------------------------------------------

    def reload(self) -> Optional[str]:
        """Re-read the config; None when applied, else the error (the
        running config stays). Unchanged jobs keep running untouched."""
        from pilot import config
        from pilot.errors import PilotError
        if self._shutdown_started:
            return "pilot is shutting down"
        try:
            new = config.load_in_child(self.cfg.path, self.environ)  # supervision goes on meanwhile
        except PilotError as exc:
            log.error("error initializing config: %s", exc)
            return str(exc)
        if self._shutdown_started:  # SIGTERM came while the config loaded
            return "pilot is shutting down"
        log_warnings(new)
        self._reloading.wait()
        self._reloading.clear()
        gevent.spawn(self._apply, new)
        return None

    def _apply(self, new: Config) -> None:
        old, self.cfg = self.cfg, new
        old_consul = self._consul
        try:
            self._swap_components(old, new)
            self._swap_jobs(old, new)
            if old_consul is not None and old_consul is not self._consul:
                old_consul.close()  # its stopped jobs have deregistered through it
            self._main = next((j.name for j in new.jobs if j.main), None)
            log.debug("control: reloaded app via control plane")
        finally:
            self._reloading.set()

    def _swap_jobs(self, old: Config, new: Config) -> None:
        deps, order = dependents(new.jobs), stop_order(new.jobs)
        keep, stop = {}, []
        for name, r in self.runners.items():
            nc = new.job(name)
            same_consul = old.consul == new.consul or not r.cfg.advertised
            if nc == r.cfg and deps.get(name) == r.job.dependent and same_consul \
                    and order.get(name) == r.job.stop_after:
                keep[name] = r
            else:
                stop.append(r)
        stop += hooks_of(stop, keep)
        for r in stop:
            keep.pop(r.cfg.name, None)
        stopping = {r.cfg.name for r in stop}
        for r in stop:  # all put before any job runs: hooks are armed in time
            hook = is_stop_hook(r.cfg, stopping)
            r.box.put(Event(jobs.STOP_HOOK if hook else jobs.STOP, r.cfg.name),  # this job only
                      urgent=True)
        for r in stop:
            if r.greenlet is not None:
                r.greenlet.join()
            self.bus.unsubscribe(r.box)
        self._export_ips(new)
        fresh = []
        for jc in new.jobs:
            if self._shutdown_started:
                break  # SIGTERM came during the reload: start nothing new
            if jc.name not in keep:
                keep[jc.name] = JobRunner(self, jc, deps.get(jc.name), order[jc.name])
                if self.maintenance:
                    keep[jc.name].job.hold_in_maintenance()
                fresh.append(keep[jc.name])
        self.runners = {jc.name: keep[jc.name] for jc in new.jobs if jc.name in keep}
        for r in fresh:
            r.start(self.group)
            r.box.put(ev.GLOBAL_STARTUP)

    def _swap_components(self, old: Config, new: Config) -> None:
        from pilot import log as pilot_log
        try:
            pilot_log.configure(new.logging)
        except OSError as exc:
            log.error("Error initializing log file '%s': %s", new.logging.output, exc)
        previous = self.telemetry
        for comp in reversed(self.components):
            comp.stop()
        if new.consul != old.consul:
            self._consul = None
        if new.control.socket != old.control.socket and self.control is not None:
            self.control.stop()
            self.control = self._control_server(new)
            self.control.start()
        self.components = self._optional_components(new)
        if self.telemetry is not None and previous is not None:
            self.telemetry.adopt(previous)  # Pilot's own counters keep counting
        for comp in self.components:
            comp.start()

    # -- orders from signals and the control plane -----------------------

    def signal_event(self, name: str) -> None:
        self.bus.publish(Event(ev.SIGNAL, name))

    def set_maintenance(self, enabled: bool) -> None:
        self.maintenance = enabled
        self.bus.publish(ev.GLOBAL_ENTER_MAINTENANCE if enabled else ev.GLOBAL_EXIT_MAINTENANCE)

    def putenv(self, values: Dict[str, str]) -> None:
        for k, v in values.items():
            self.environ[k] = v

    def status(self) -> dict:
        """Every job's state, for `GET /v3/status` and `-status`."""
        jobs = []
        for name, r in self.runners.items():
            j = r.job
            last = j.process.last_status if j.process is not None else None
            jobs.append({
                "name": name, "state": j.phase, "status": j.status,
                "pid": j.process.pid if j.process is not None and j.process.running else None,
                "restarts": j.restarts_done, "runs": j.runs,
                "last_exit": None if last is None else (last.code if last.signal is None and last.error is None else last.reason),
                "advertised": r.cfg.advertised,
            })
        return {"jobs": jobs, "maintenance": self.maintenance,
                "watches": [c.status() for c in self.components if hasattr(c, "instances")]}
