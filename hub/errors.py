"""Domain errors. Each says what was wrong and how to fix it.

The gRPC server maps these classes to status codes in one place
(``hub.server.status``); the CLI prints their message without a traceback.
"""

from __future__ import annotations

import re

MAX_ERROR_CHARS = 1000  # error text returned to clients or logged with a generation
# Absolute POSIX paths of two or more parts, and file/sqlite URLs; gRPC method names (/pkg.Service/Method) are kept.
_PATH = re.compile(r"\b[a-z][a-z0-9+]*:/+[^\s'\"`]+|(?<![\w.:/-])/(?:[^\s'\"`,;:()\[\]{}<>/]+/)+[^\s'\"`,;:()\[\]{}<>]*")
_METHOD = re.compile(r"/[a-z_][\w.]*\.[A-Z]\w*/[A-Z]\w*")


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


def clean_message(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """Error text safe to hand out: server file paths replaced by ``<path>``, at most ``limit`` characters."""
    total = len(text)
    text = _PATH.sub(lambda m: m.group(0) if _METHOD.fullmatch(m.group(0)) else "<path>", text[: limit * 2])
    if total <= limit * 2 and len(text) <= limit:  # bounded work on hostile input: the regex sees 2 x limit at most
        return text
    return text[: limit - 40] + f"... (cut; {total} characters in all)"
