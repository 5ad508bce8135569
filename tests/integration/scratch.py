"""Emulate `docker run` of Dockerfile.scratch without Docker.

The image is rebuilt as a directory from the Dockerfile itself (COPY, WORKDIR, ENV,
ENTRYPOINT are read from it, so the test and the image cannot drift), then ENTRYPOINT
runs as PID 1 of a new PID and mount namespace, chrooted into that directory, with
/proc and /dev mounted as Docker would and only the image's environment.

Options mirror `docker run` flags: `read_only=True` (--read-only: the image root is
bind-mounted read-only), `tmpfs={"/tmp": "exec"}` (--tmpfs /tmp:exec; Docker's
defaults rw,nosuid,nodev,noexec apply unless an option overrides them), `user="1000:1000"`
(--user), `volumes={HOST_DIR: PATH}` (-v HOST_DIR:PATH) and `env={...}` (-e; None as a
value removes the image's variable).
"""
import json
import os
import re
import shlex
import shutil
import signal
import subprocess

from tests.support import DEADLINE, wait_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKERFILE = os.path.join(REPO, "Dockerfile.scratch")
# What `docker run` adds to an image that sets no PATH/HOME.
DOCKER_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "HOME": "/root", "HOSTNAME": "scratch"}


class Image:
    """The parts of Dockerfile.scratch that describe the image."""

    def __init__(self, path=DOCKERFILE):
        self.copies, self.workdirs, self.env, self.entrypoint = [], [], {}, None
        with open(path) as f:
            for line in self._instructions(f.read()):
                self._apply(*line.split(None, 1))

    @staticmethod
    def _instructions(text):
        joined = re.sub(r"\\\n", " ", text)
        return [line.strip() for line in joined.splitlines()
                if line.strip() and not line.strip().startswith("#")]

    def _apply(self, keyword, rest):
        keyword = keyword.upper()
        if keyword == "FROM":
            if rest.strip() != "scratch":
                raise ValueError(f"Dockerfile.scratch: FROM {rest} is not emulated")
        elif keyword == "COPY":
            *sources, dest = shlex.split(rest)
            self.copies += [(src, dest) for src in sources]
        elif keyword == "WORKDIR":
            self.workdirs.append(rest.strip())
        elif keyword == "ENV":
            self._env(rest)
        elif keyword == "ENTRYPOINT":
            self.entrypoint = json.loads(rest)
        else:
            raise ValueError(f"Dockerfile.scratch: {keyword} is not emulated")

    def _env(self, rest):
        if "=" not in rest.split(None, 1)[0]:
            name, value = rest.split(None, 1)
            self.env[name] = value.strip()
            return
        for pair in shlex.split(rest):
            name, value = pair.split("=", 1)
            self.env[name] = value

    def build(self, root, files=None):
        """Lay the image out in root; files maps image paths to replacement text."""
        for src, dest in self.copies:
            target = os.path.join(root, dest.lstrip("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(os.path.join(REPO, src), target)
        for workdir in self.workdirs + ["/proc", "/dev"]:
            os.makedirs(os.path.join(root, workdir.lstrip("/")), exist_ok=True)
        for path, text in (files or {}).items():
            target = os.path.join(root, path.lstrip("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w") as f:
                f.write(text)


def tmpfs_options(extra):
    """Mount options of `docker run --tmpfs PATH:EXTRA` (noexec unless `exec` is asked)."""
    options = ["rw", "nosuid", "nodev", "noexec"]
    for option in filter(None, (extra or "").split(",")):
        opposite = {"exec": "noexec", "suid": "nosuid", "dev": "nodev"}.get(option)
        options = [o for o in options if o != opposite] + [option]
    return ",".join(options)


class Container:
    """ENTRYPOINT running as PID 1 in root; output goes to a file tests can wait on."""

    def __init__(self, image, root, args=(), read_only=False, tmpfs=None, user=None,
                 env=None, volumes=None, name="container"):
        self.image, self.root, self.args = image, root, list(args)
        self.read_only, self.tmpfs, self.user = read_only, dict(tmpfs or {}), user
        self.volumes = dict(volumes or {})
        self.env = dict(DOCKER_ENV, **image.env)
        for key, value in (env or {}).items():
            if value is None:
                self.env.pop(key, None)
            else:
                self.env[key] = value
        self.log_path = os.path.join(os.path.dirname(root), f"{name}.log")
        self.process, self.pid1 = None, None

    def _mounts(self):
        """Shell commands setting up the container's mounts, as Docker would."""
        root = shlex.quote(self.root)
        steps = [f"mount --bind {root} {root}"]
        if self.read_only:
            steps.append(f"mount -o remount,bind,ro {root}")
        steps += [f"mount -t proc proc {root}/proc", f"mount --rbind /dev {root}/dev"]
        for source, path in self.volumes.items():
            target = shlex.quote(self.root + "/" + path.lstrip("/"))
            steps.append(f"mount --bind {shlex.quote(source)} {target}")
        for path, extra in self.tmpfs.items():
            target = shlex.quote(self.root + "/" + path.lstrip("/"))
            steps.append(f"mount -t tmpfs -o {tmpfs_options(extra)} tmpfs {target}")
        return " && ".join(steps)

    def start(self):
        """Start like `docker run IMAGE ARGS`; return once PID 1 exists."""
        command = " ".join(shlex.quote(a) for a in self.image.entrypoint + self.args)
        user = f"--userspec={shlex.quote(self.user)} " if self.user else ""
        script = f"{self._mounts()} && exec chroot {user}{shlex.quote(self.root)} {command}"
        env = self.env
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                ["unshare", "--pid", "--fork", "--mount", "--propagation", "private",
                 "/bin/sh", "-c", script],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.pid1 = self._wait_for_pid1()
        return self

    def _wait_for_pid1(self, timeout=DEADLINE):
        """The host pid of the namespace's PID 1 (unshare's only child); None when the
        container already ended (a start-up error: its output says why)."""
        found = wait_for(lambda: self._pid1() or (self.process.poll() is not None and "ended"),
                         timeout, "the container's PID 1", interval=0.01)
        return None if found == "ended" else found

    def _pid1(self):
        path = f"/proc/{self.process.pid}/task/{self.process.pid}/children"
        try:
            with open(path) as f:
                children = f.read().split()
        except FileNotFoundError:
            return None
        return int(children[0]) if children else None

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_for_output(self, pattern, timeout=DEADLINE, count=1):
        """Wait until pattern (a regex) has matched `count` times; return the matches."""
        def matched_or_ended():
            found = re.findall(pattern, self.output(), re.MULTILINE)
            if len(found) >= count:
                return found
            return self.process.poll() is not None and "ended"
        found = wait_for(matched_or_ended, timeout, lambda: f"{count}x {pattern!r} in container "
                         f"output:\n{self.output()}", interval=0.05)
        if found == "ended":
            raise AssertionError(f"no {count}x {pattern!r} in container output:\n{self.output()}")
        return found

    def signal(self, signum):
        """Send signum to PID 1, as `docker kill -s` does."""
        os.kill(self.pid1, signum)

    def wait(self, timeout=DEADLINE):
        """Exit status as `docker run` reports it."""
        return self.process.wait(timeout)

    def run(self, *argv, timeout=DEADLINE, user=None, env=None):
        """Run a command inside the running container, as `docker exec [--user] [-e ...]`
        does."""
        return subprocess.run(self._exec(argv, user), env=dict(self.env, **(env or {})),
                              capture_output=True, text=True, timeout=timeout, check=False)

    def start_exec(self, *argv, user=None):
        """Start a long-running command inside the container (`docker exec`
        of `/pilot -events`); its output is read through the pipes."""
        return subprocess.Popen(self._exec(argv, user), env=dict(self.env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def _exec(self, argv, user):
        as_user, user = user or self.user, []
        if as_user and as_user not in ("0", "0:0"):
            uid, _, gid = as_user.partition(":")
            user = ["--setuid", uid, "--setgid", gid or uid]
        return ["nsenter", "-t", str(self.pid1), "--pid", "--mount", "--root", "--wd", *user, *argv]

    def path(self, path):
        """Where the host sees an image path: through PID 1's root while it runs
        (a tmpfs is visible only there), else in the image directory."""
        running = self.pid1 and self.process.poll() is None
        base = f"/proc/{self.pid1}/root" if running else self.root
        return os.path.join(base, path.lstrip("/"))

    def leftovers(self):
        """Entries the launcher left in the image's TMPDIR (unpacked copies, links)."""
        tmp = self.path(self.env.get("TMPDIR") or "/tmp")
        return sorted(name for name in os.listdir(tmp) if name.startswith((
            "pilot-", ".pilot-"))) if os.path.isdir(tmp) else []

    def unpacked_copies(self):
        """Directories the launcher unpacked Pilot into that still exist."""
        return [name for name in self.leftovers() if name.startswith("pilot-")]

    def stop(self):
        """Kill everything in the namespace (PID 1 dying takes the rest along)."""
        if self.process and self.process.poll() is None and self.pid1:
            try:
                os.kill(self.pid1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
