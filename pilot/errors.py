"""Errors users see. Each renders as one line: never a traceback."""


class PilotError(Exception):
    """Base of every error Pilot reports to a user as a single line."""


class ConfigError(PilotError):
    """A config that cannot be loaded.

    `file` is the config path, `path` the field as the user wrote it
    (``job[web].health.interval``), `message` what was wrong and expected.
    `line` is set where the parser gives one.
    """

    def __init__(self, message, file=None, path=None, line=None):
        self.message = message
        self.file = file
        self.path = path
        self.line = line
        super().__init__(str(self))

    def __str__(self):
        if not self.file:
            return self.message
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"

    def with_file(self, file):
        """Return the same error naming `file` (builders do not know it)."""
        if self.file:
            return self
        return ConfigError(self.message, file=file, path=self.path, line=self.line)


class TemplateError(PilotError):
    """The config's Go template could not be parsed or executed."""

    def __init__(self, message, line=None):
        self.message = message
        self.line = line
        super().__init__(message)


class UsageError(PilotError):
    """Bad command-line flags (exit status 2, as Go's flag package)."""


class ControlError(PilotError):
    """A control-plane client request failed."""


class UnknownJob(PilotError):
    """An order named a job the running config does not have."""

    def __init__(self, name):
        self.name = name
        super().__init__(f"no such job: {name!r}")
