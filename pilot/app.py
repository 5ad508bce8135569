"""The App: builds every component from a Config, wires them to one bus,
runs them, reloads them and shuts them down in order.

Components never call each other. Jobs, watches and servers publish and
subscribe on the bus this class creates; each also gets the few functions
it needs from the App as a small interface (the control server's
`Supervisor`, telemetry's view of the jobs, a watch's instance-count
report), never the App itself. Optional parts (Consul, control server,
telemetry, watches) are imported only when the config uses them.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from typing import Dict, List, Mapping, Optional

import gevent
import gevent.event
import gevent.pool

from pilot import events as ev
from pilot.config.model import Config, JobConfig
from pilot.errors import UnknownJob
from pilot.events import Bus, Event
from pilot.graph import dependents, stop_order
from pilot.jobs import STOP, STOP_HOOK, JobRunner
from pilot.plan import plan
from pilot.timeline import Timeline

log = logging.getLogger("pilot")

FORCE_AFTER = 1.0  # seconds: a repeated signal sooner than this is a duplicate
FORCED_KILL_STATUS = 128 + signal.SIGKILL  # a job had to be SIGKILLed at shutdown
DEREGISTER_GRACE = 6.0  # seconds Pilot's exit waits for deregistrations in flight


def ip_env_name(job_name: str) -> str:
    return "CONTAINERPILOT_" + job_name.upper().replace("-", "_") + "_IP"


def log_warnings(cfg: Config) -> None:
    """What a config gets away with (3.8 loads it too), told once per load."""
    for warning in cfg.warnings:
        log.warning("%s: %s", cfg.path, warning)


class App:
    def __init__(self, cfg: Config, environ=None):
        self.cfg = cfg
        # Pilot's environment for its children (docs/behaviour.md §15) is a
        # dict of its own, never os.environ: glibc's setenv keeps every value
        # it is ever given, so setting CONTAINERPILOT_<JOB>_PID on each run
        # would grow memory for as long as the container lives.
        self.environ = dict(os.environ) if environ is None else environ
        self.bus = Bus()
        self.timeline = Timeline()  # `-events`: the bus and the jobs' moments, in words
        self.bus.listen(self.timeline.record)
        self.group = gevent.pool.Group()  # the App's own greenlets (reload, main-job shutdown)
        self.runners: Dict[str, JobRunner] = {}
        self.components: list = []  # telemetry first, then watches
        self.exit_code = 0
        self.maintenance = False
        self._shutdown_started = False
        self._shutdown_at = 0.0
        self._forced = False
        self._changed = gevent.event.Event()  # a job completed, a reload ended, a stop was forced
        self._consul = None
        self._main_ended: Optional[JobRunner] = None  # the first main job that ended for good
        self._services: list = []  # every Consul service built, to await deregistrations
        self._retired: list = []  # commands of replaced jobs, kept for the final grace
        self.telemetry = None
        self.control = None
        self._reloading = gevent.event.Event()
        self._reloading.set()  # set = no reload in progress

    # -- building -------------------------------------------------------------

    @property
    def consul(self):
        """The Consul client, built on first use (only configs with consul)."""
        if self._consul is None and self.cfg.consul is not None:
            from pilot.discovery import Consul
            self._consul = Consul(self.cfg.consul)
        return self._consul

    def _service_for(self, cfg: JobConfig):
        if not cfg.advertised or self.consul is None:
            return None
        from pilot.discovery import BackgroundService, ServiceDefinition
        service = BackgroundService(ServiceDefinition(cfg, self.consul))
        self._services.append(service)
        return service

    def _runner(self, cfg: JobConfig, deps: Mapping[str, str], order) -> JobRunner:
        return JobRunner(cfg, bus=self.bus, environ=self.environ, service=self._service_for(cfg),
                         dependent=deps.get(cfg.name), stop_after=order[cfg.name],
                         kill_timeout=self.cfg.stop_timeout, on_complete=self._job_complete,
                         moments=self.timeline)

    def _build(self) -> None:
        deps, order = dependents(self.cfg.jobs), stop_order(self.cfg.jobs)
        self.runners = {jc.name: self._runner(jc, deps, order) for jc in self.cfg.jobs}
        self._export_ips(self.cfg)
        self.control = self._control_server(self.cfg)
        self.components = self._optional_components(self.cfg)

    def _export_ips(self, cfg: Config) -> None:
        for jc in cfg.jobs:
            if jc.advertised and jc.ip:
                self.environ[ip_env_name(jc.name)] = jc.ip

    def _control_server(self, cfg: Config):
        from pilot.control import ControlServer
        return ControlServer(self, cfg.control.socket, metrics=lambda: self.telemetry,
                             timeline=self.timeline, source=cfg.source)

    def _optional_components(self, cfg: Config) -> list:
        """Telemetry first (watches report to it), then watches."""
        comps = []
        self.telemetry = None
        if cfg.telemetry is not None:
            from pilot.telemetry import Telemetry
            self.telemetry = Telemetry(cfg.telemetry, bus=self.bus, jobs=self.job_statuses,
                                       watches=lambda: [w.name for w in self.cfg.watches],
                                       health=self.health)
            comps.append(self.telemetry)
        if cfg.watches:
            from pilot.watches import KeyWatch, Watch
            comps += [KeyWatch(w, self.consul, self.bus) if w.key is not None else
                      Watch(w, self.consul, self.bus, report=self._report_watch)
                      for w in cfg.watches]
        if cfg.templates:
            from pilot.templates import Templates
            comps.append(Templates(cfg.templates, self.consul, self.bus, self.environ,
                                   previous=self._templates()))
        return comps

    def _templates(self):
        """The Templates component, if the config has templates."""
        return next((c for c in self.components if hasattr(c, "rendered_sources")), None)

    def _report_watch(self, service: str, instances: int) -> None:
        if self.telemetry is not None:
            self.telemetry.set_watch_instances(service, instances)

    # -- running ------------------------------------------------------------------

    def run(self) -> int:
        """Run until every job is complete or a shutdown finishes."""
        self._build()
        self._start_servers()
        for runner in self.runners.values():
            runner.start()
        self.bus.publish(ev.GLOBAL_STARTUP)
        self._wait_for_jobs()
        # Servers and watches stop (socket removed, telemetry deregistered)
        # before the grace period, not after it (docs/behaviour.md §16.2).
        for comp in reversed(self.components):
            comp.stop()
        if self.control is not None:
            self.control.stop()
        self._final_grace()
        self._await_deregistrations()
        self.group.kill(block=False)
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

    def _job_complete(self, runner: JobRunner) -> None:
        """A job ended for good. The first main job to do so shuts the
        container down with its exit code (ECS `essential`)."""
        if runner.cfg.main and self._main_ended is None and not self._shutdown_started:
            self._main_ended = runner
            log.info("main job %s ended, shutting down", runner.name)
            self.group.spawn(self.shutdown)
        self._changed.set()

    def _wait_for_jobs(self) -> None:
        while True:
            self._changed.clear()
            self._reloading.wait()
            if self._forced or self._finished():
                break
            self._changed.wait()
        if not self._shutdown_started:
            log.info("all jobs complete, shutting down")

    def _finished(self) -> bool:
        """Every job complete; without a shutdown, only if there are jobs
        (with none, Pilot runs until it is told to stop)."""
        done = all(r.complete for r in self.runners.values())
        return done and (self._shutdown_started or bool(self.runners))

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
                self._signal_all(signal.SIGKILL)
                self._forced = True
                self._changed.set()
            return
        self._shutdown_started = True
        self._shutdown_at = now
        drain = self._drain_time()
        if drain > 0:
            self.group.spawn(self._drain, drain)
        else:
            self._stop_jobs()

    def _stop_jobs(self) -> None:
        self.bus.publish(ev.GLOBAL_SHUTDOWN)
        self._changed.set()

    def _drain_time(self) -> float:
        """`consul.drain`, cut to the stop budget (the top-level stopTimeout);
        0 when nothing is advertised (or Pilot is in maintenance)."""
        if self.cfg.consul is None or self.cfg.consul.drain <= 0 or self.maintenance:
            return 0.0
        if not any(r.job.service is not None and not r.complete for r in self.runners.values()):
            return 0.0
        return min(self.cfg.consul.drain, max(self.cfg.stop_timeout, 0))

    def _drain(self, seconds: float) -> None:
        """Leave Consul first, give clients and load balancers `seconds` to
        notice, then stop the jobs (in dependency order, as always)."""
        live = [r for r in self.runners.values() if r.job.service is not None and not r.complete]
        for r in live:
            r.job.service.withdraw()
        log.info("consul: draining for %gs before stopping jobs (deregistered %s)",
                 seconds, ", ".join(r.name for r in live))
        gevent.sleep(max(0.0, self._shutdown_at + seconds - time.monotonic()))
        if not self._forced:
            log.info("consul: drain done after %.1fs, stopping jobs", time.monotonic() - self._shutdown_at)
            self._stop_jobs()

    def _commands(self) -> list:
        found = [c for r in self.runners.values() for c in r.commands()]
        return found + [c for c in self._retired if c not in found]

    def _final_grace(self) -> None:
        """The top-level stopTimeout (docs/behaviour.md §16.2 step 3), ended
        early once no job process remains; then SIGKILL for what is left."""
        timeout = self.cfg.stop_timeout
        if timeout > 0:
            log.debug("killing all processes in %d seconds", timeout)
            with gevent.Timeout(timeout, False):
                while any(c.group_alive() for c in self._commands()):
                    gevent.sleep(0.02)
        for r in self.runners.values():
            if any(c.group_alive() for c in r.commands()):
                # The exec itself still running is a forced stop; what is left
                # in its group after it exited (background children, zombies
                # not yet reaped) is cleaned up as 3.8 does, quietly.
                if r.job.process is not None and r.job.process.running:
                    r.job.forced = True
                    log.warning('killing processes for job "%s": still running after the stop timeout',
                                r.name)
                else:
                    log.info('killing processes for job "%s"', r.name)
                for c in r.commands():
                    c.signal(signal.SIGKILL)
        for c in self._retired:
            c.signal(signal.SIGKILL)
        for c in self._commands():
            c.stop()

    def _await_deregistrations(self) -> None:
        """Deregistrations run in the background; the exit waits for them
        (bounded: a hung agent cannot keep Pilot for longer than its timeout)."""
        pending = [s.leaving for s in self._services if s.leaving is not None]
        if pending:
            gevent.joinall(pending, timeout=DEREGISTER_GRACE)

    def _signal_all(self, sig: int) -> None:
        for c in self._commands():
            c.signal(sig)

    def _exit_status(self) -> int:
        if self.exit_code:
            return self.exit_code
        main = self._main_ended or next((r for r in self.runners.values() if r.cfg.main), None)
        cmd = main.job.process if main is not None else None
        if cmd is not None:
            try:
                st = cmd.wait(timeout=1)  # its exit may still be on its way
            except gevent.Timeout:
                st = cmd.last_status
            if st is not None and st.shell_code:
                return st.shell_code
        if any(r.job.forced for r in self.runners.values()):
            return FORCED_KILL_STATUS
        return 0

    # -- reload ---------------------------------------------------------------------

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
        self.group.spawn(self._apply, new)
        return None

    def _apply(self, new: Config) -> None:
        old, self.cfg = self.cfg, new
        old_consul = self._consul
        try:
            self._swap_components(old, new)
            self._swap_jobs(old, new)
            if old_consul is not None and old_consul is not self._consul:
                self._await_deregistrations()
                old_consul.close()  # its stopped jobs have deregistered through it
            log.debug("control: reloaded app via control plane")
        finally:
            self._reloading.set()
            self._changed.set()

    def _swap_jobs(self, old: Config, new: Config) -> None:
        """Apply the reload plan: stop what changed (hooks kept armed for one
        more run), wait for it, then build and start what is new."""
        todo = plan(old, new, list(self.runners))
        stopping = [self.runners[name] for name in todo.stop]
        with self.bus.holding():  # all ordered before any job reacts: hooks are armed in time
            for r in stopping:
                r.order(STOP_HOOK if r.name in todo.hooks else STOP)
        for r in stopping:
            while not r.complete:
                self._changed.clear()
                self._changed.wait()
            self._retired += r.commands()
        self._export_ips(new)
        deps, order = dependents(new.jobs), stop_order(new.jobs)
        kept = {name: self.runners[name] for name in todo.keep}
        fresh = []
        for name in todo.start:
            if self._shutdown_started:
                break  # SIGTERM came during the reload: start nothing new
            runner = self._runner(new.job(name), deps, order)
            if self.maintenance:
                runner.job.hold_in_maintenance()
            kept[name] = runner
            fresh.append(runner)
        self.runners = {jc.name: kept[jc.name] for jc in new.jobs if jc.name in kept}
        templates = self._templates()
        rendered = templates.rendered_sources() if templates is not None else set()
        for r in fresh:
            r.start()
        for r in fresh:
            r.tell(ev.GLOBAL_STARTUP)
            # A template's file that is there stays quiet: a job that waits
            # for its `changed` must not wait for the next change.
            for source in {c.source for c in r.cfg.when.conditions
                           if c.source in rendered and c.event == ev.CHANGED}:
                r.tell(Event(ev.CHANGED, source))

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
        elif self.control is not None:
            self.control.serves(new.source)  # what dist/pilot's client calls rely on
        self.components = self._optional_components(new)
        if self.telemetry is not None and previous is not None:
            self.telemetry.adopt(previous)  # Pilot's own counters keep counting
        for comp in self.components:
            comp.start()

    # -- orders from signals and the control plane ------------------------------------

    def signal_event(self, name: str) -> None:
        self.bus.publish(Event(ev.SIGNAL, name))

    def set_maintenance(self, enabled: bool) -> None:
        self.maintenance = enabled
        self.bus.publish(ev.GLOBAL_ENTER_MAINTENANCE if enabled else ev.GLOBAL_EXIT_MAINTENANCE)

    def putenv(self, values: Mapping[str, str]) -> None:
        for k, v in values.items():
            self.environ[k] = v

    def job_statuses(self) -> List:
        return [r.status() for r in self.runners.values()]

    def health(self) -> dict:
        """One answer for the container (`-health`, `/v3/health`, telemetry's
        `/health`): healthy when every job with a health check passes it and
        no job failed for good; each such job with what is wrong with it."""
        jobs = {}
        for status in self.job_statuses():
            problem = status.problem()
            if status.health_checked or problem:
                jobs[status.name] = {"healthy": problem is None, "state": status.phase.value,
                                     "status": status.health.shown, "failures": status.failures,
                                     "output": problem or status.check_output}
        return {"healthy": all(j["healthy"] for j in jobs.values()), "jobs": jobs}

    def _runner_named(self, name: str) -> JobRunner:
        runner = self.runners.get(name)
        if runner is None:
            raise UnknownJob(name)
        return runner

    def order_job(self, name: str, action: str) -> Optional[str]:
        """`stop`, `start` or `restart` one job; None when done, else why not.
        UnknownJob when there is no such job."""
        runner = self._runner_named(name)
        if self._shutdown_started:
            return "pilot is shutting down"
        return runner.order_now(action)

    def signal_job(self, name: str, sig: int) -> Optional[str]:
        return self._runner_named(name).job.signal(sig)

    def job_status(self, name: str) -> dict:
        return self._runner_named(name).status().as_dict()

    def status(self) -> dict:
        """Every job's state, for `GET /v3/status` and `-status`."""
        templates = self._templates()
        return {"jobs": [s.as_dict() for s in self.job_statuses()], "maintenance": self.maintenance,
                "watches": [c.status() for c in self.components if hasattr(c, "instances")],
                "templates": templates.status() if templates is not None else []}


