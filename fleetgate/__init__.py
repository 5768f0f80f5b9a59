"""fleetgate: the CLI wiring point and the plumbing shared by every service."""

__version__ = "0.1.0"
