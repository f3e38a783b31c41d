"""Pure parts of the REST client: Retry-After parsing and ApiError from a Status body."""

from __future__ import annotations

import orjson
import pytest
from multidict import CIMultiDict

from pykubemark.kube.client import ApiError, _retry_after


@pytest.mark.parametrize(("value", "expected"), [
    ("5", 5.0),
    ("0", 0.0),
    ("0.25", 0.25),
    ("-3", 0.0),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 1.0),  # HTTP-date: not parsed, wait a second
    ("soon", 1.0),
])
def test_retry_after_values(value: str, expected: float) -> None:
    assert _retry_after({"Retry-After": value}) == expected


def test_retry_after_absent() -> None:
    assert _retry_after({}) is None
    assert _retry_after({"Content-Type": "application/json"}) is None


def test_retry_after_header_name_case_insensitive_in_aiohttp_headers() -> None:
    assert _retry_after(CIMultiDict({"retry-after": "2"})) == 2.0


def status_body(code: int, reason: str, message: str) -> bytes:
    return orjson.dumps({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "details": {"name": "p", "kind": "pods"},
        "code": code,
    })


def test_api_error_from_status_body() -> None:
    error = ApiError(404, status_body(404, "NotFound", 'pods "p" not found'), "GET",
                     "/api/v1/namespaces/default/pods/p")
    assert error.status == 404
    assert error.reason == "NotFound"
    assert error.message == 'pods "p" not found'
    assert error.not_found
    assert not error.conflict
    assert not error.gone
    text = str(error)
    assert text.startswith("GET /api/v1/namespaces/default/pods/p: 404 NotFound")
    assert 'pods "p" not found' in text


@pytest.mark.parametrize(("status", "reason", "flag"), [
    (409, "Conflict", "conflict"),
    (410, "Expired", "gone"),
])
def test_api_error_flags(status: int, reason: str, flag: str) -> None:
    error = ApiError(status, status_body(status, reason, "m"))
    assert error.reason == reason
    flags = {"not_found": error.not_found, "conflict": error.conflict, "gone": error.gone}
    assert flags == {name: name == flag for name in flags}


def test_api_error_non_json_body() -> None:
    body = b"<html>502 Bad Gateway</html>" + b"x" * 500
    error = ApiError(502, body, "PATCH", "/x")
    assert error.reason == ""
    assert error.message == body[:200].decode()
    assert "502" in str(error)


def test_api_error_json_without_status_fields() -> None:
    error = ApiError(500, b'{"error": "boom"}')
    assert error.reason == ""
    assert error.message == '{"error": "boom"}'


def test_api_error_json_not_an_object() -> None:
    error = ApiError(500, b'["a", "b"]')
    assert error.reason == ""
    assert error.message == '["a", "b"]'


def test_api_error_empty_body() -> None:
    error = ApiError(503, b"")
    assert error.status == 503
    assert error.reason == ""
    assert error.message == ""
