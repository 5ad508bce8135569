"""Pilot: a container init system and service-discovery supervisor that runs
ContainerPilot 3.x configurations unchanged."""

__version__ = "0.1.0"
GIT_HASH = ""
