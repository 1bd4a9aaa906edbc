"""The one mapping of domain errors to status codes, and back."""

from __future__ import annotations

import grpc
import pytest

from hub import errors
from hub.server.status import error_for, status_for

TABLE = [
    (errors.InvalidArgument("steps", "must be between 1 and 1000, got 5000"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound("no model 'x'"), grpc.StatusCode.NOT_FOUND),
    (errors.ResourceExhausted("queue full"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.DeadlineExceeded("too slow"), grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.Cancelled("stopped"), grpc.StatusCode.CANCELLED),
    (errors.AlreadyExists("taken"), grpc.StatusCode.ALREADY_EXISTS),
    (errors.ArtifactCorrupt("bad bytes"), grpc.StatusCode.DATA_LOSS),
    (errors.StartupError("two plugins"), grpc.StatusCode.INTERNAL),
    (errors.PluginError("plugin raised"), grpc.StatusCode.INTERNAL),
    (errors.Unavailable("the replica stopped; retry"), grpc.StatusCode.UNAVAILABLE),
    (errors.FailedPrecondition("never trained"), grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Unauthenticated("no token"), grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied("needs scope 'admin'"), grpc.StatusCode.PERMISSION_DENIED),
]


@pytest.mark.parametrize(("error", "code"), TABLE, ids=[type(e).__name__ for e, _ in TABLE])
def test_each_domain_error_has_one_status_and_keeps_its_message(error: errors.GenhubError, code: grpc.StatusCode) -> None:
    assert status_for(error) == (code, str(error))


def test_every_domain_error_class_is_in_the_table() -> None:
    classes = {cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.GenhubError)}
    assert classes - {errors.GenhubError} == {type(e) for e, _ in TABLE}


def test_unexpected_exceptions_are_internal_without_their_details() -> None:
    code, message = status_for(KeyError("secret path /etc/x"))
    assert code == grpc.StatusCode.INTERNAL
    assert "secret" not in message and "KeyError" in message


@pytest.mark.parametrize(("error", "code"), TABLE[:7], ids=[type(e).__name__ for e, _ in TABLE[:7]])
def test_clients_get_the_same_domain_class_back(error: errors.GenhubError, code: grpc.StatusCode) -> None:
    back = error_for(code, str(error))
    assert type(back) is type(error) and str(back) == str(error)


def test_invalid_argument_keeps_its_field_across_the_wire() -> None:
    back = error_for(grpc.StatusCode.INVALID_ARGUMENT, "num_samples: must be between 1 and 64, got 65")
    assert isinstance(back, errors.InvalidArgument) and back.field == "num_samples"


def test_an_unreachable_server_says_what_to_check() -> None:
    assert "genhub serve" in str(error_for(grpc.StatusCode.UNAVAILABLE, "connection refused"))
