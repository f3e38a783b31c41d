"""client-go's HTTP/2 health knobs, read from the environment as client-go reads them."""

from __future__ import annotations

import logging

import pytest

from pykubemark.kube import http2


def test_unset_keeps_client_gos_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTP2_READ_IDLE_TIMEOUT_SECONDS", raising=False)
    assert http2._seconds("HTTP2_READ_IDLE_TIMEOUT_SECONDS", 30.0) == 30.0


def test_whole_seconds_are_taken_and_zero_turns_the_ping_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP2_PING_TIMEOUT_SECONDS", "4")
    assert http2._seconds("HTTP2_PING_TIMEOUT_SECONDS", 15.0) == 4.0
    monkeypatch.setenv("HTTP2_READ_IDLE_TIMEOUT_SECONDS", "0")
    assert http2._seconds("HTTP2_READ_IDLE_TIMEOUT_SECONDS", 30.0) == 0.0


def test_a_bad_value_keeps_the_default_and_says_so(monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("HTTP2_READ_IDLE_TIMEOUT_SECONDS", "2.5s")
    with caplog.at_level(logging.WARNING):
        assert http2._seconds("HTTP2_READ_IDLE_TIMEOUT_SECONDS", 30.0) == 30.0
    assert "HTTP2_READ_IDLE_TIMEOUT_SECONDS" in caplog.text
