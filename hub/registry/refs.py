"""Model references and name rules.

A reference names one version: ``name`` (the ``latest`` alias), ``name:3``
(version 3) or ``name@prod`` (whatever the ``prod`` alias points at).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hub.errors import InvalidArgument

LATEST = "latest"
MODEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
ALIAS_RE = re.compile(r"[a-z][a-z0-9_-]{0,99}")
_REF_RE = re.compile(r"(?P<name>[^:@]*)(?::(?P<version>[^:@]*)|@(?P<alias>[^:@]*))?")
_VERSION_RE = re.compile(r"[1-9][0-9]{0,8}")
_REF_FORMS = "use NAME, NAME:VERSION or NAME@ALIAS (e.g. ddpm-digits, ddpm-digits:3, ddpm-digits@prod)"


@dataclass(frozen=True)
class Ref:
    """A parsed reference: exactly one of ``version`` and ``alias`` is set."""

    model: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        return f"{self.model}:{self.version}" if self.version is not None else f"{self.model}@{self.alias}"


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not MODEL_NAME_RE.fullmatch(name):
        raise InvalidArgument(
            "model",
            f"{name!r} is not a valid model name; use up to 200 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (e.g. ddpm-digits)",
        )
    return name


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not ALIAS_RE.fullmatch(alias):
        raise InvalidArgument(
            "alias",
            f"{alias!r} is not a valid alias; use lower-case letters, digits, '_' or '-', "
            "starting with a letter (e.g. prod, best-fid)",
        )
    return alias


def check_version(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidArgument("version", f"{version!r} is not a version number; versions are integers from 1")
    return version


def parse_ref(ref: str) -> Ref:
    """Parse ``name``, ``name:N`` or ``name@alias``; InvalidArgument("model", ...) otherwise."""
    match = _REF_RE.fullmatch(ref) if isinstance(ref, str) else None
    if match is None or not MODEL_NAME_RE.fullmatch(match["name"]):
        raise InvalidArgument("model", f"{ref!r} is not a model reference; {_REF_FORMS}")
    name, version, alias = match["name"], match["version"], match["alias"]
    if version is not None:
        if _VERSION_RE.fullmatch(version):
            return Ref(name, version=int(version))
        hint = f" (did you mean {name}@{version}?)" if ALIAS_RE.fullmatch(version) else ""
        raise InvalidArgument("model", f"{ref!r}: version {version!r} is not a positive integer{hint}; {_REF_FORMS}")
    if alias is not None:
        if not ALIAS_RE.fullmatch(alias):
            raise InvalidArgument("model", f"{ref!r}: {alias!r} is not a valid alias name; {_REF_FORMS}")
        return Ref(name, alias=alias)
    return Ref(name, alias=LATEST)
