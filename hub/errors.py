"""Domain errors. Each says what was wrong and how to fix it.

The gRPC server maps these classes to status codes in one place
(``hub.server.status``); the CLI prints their message without a traceback.
"""

from __future__ import annotations


class GenhubError(Exception):
    """Base class of every error genhub reports to a user."""


class InvalidArgument(GenhubError):
    """A request field is out of range or malformed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # picklable across processes (Ray replicas)
        return type(self), (self.field, str(self)[len(self.field) + 2 :])


class NotFound(GenhubError):
    """A model, version, alias, sampler, dataset or family does not exist."""


class AlreadyExists(GenhubError):
    """A name that must be unique is taken."""


class FailedPrecondition(GenhubError):
    """The system is not in a state the operation needs (e.g. a model that was never trained)."""


class ResourceExhausted(GenhubError):
    """A queue or limit is full; retry later or lower the load."""


class Unavailable(GenhubError):
    """The server or the replica serving a request went away; retry."""


class DeadlineExceeded(GenhubError):
    """The caller's deadline passed before the work finished."""


class Cancelled(GenhubError):
    """The caller stopped the work (a step callback returned False)."""


class Unauthenticated(GenhubError):
    """A call came without a token, or with one the server does not know (or that expired)."""


class PermissionDenied(GenhubError):
    """A call's token is valid but lacks the scope the call needs."""


class ArtifactCorrupt(GenhubError):
    """An artifact's bytes no longer match the digest it is stored under."""


class StartupError(GenhubError):
    """Plugins conflict in a way the hub cannot resolve (e.g. a duplicate model name)."""


class PluginError(GenhubError):
    """A plugin failed to import or raised inside a hook."""
