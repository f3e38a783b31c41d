"""Hollow-node profile: defaults, YAML file, command-line overrides, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from pykubemark.errors import UserError
from pykubemark.hollow.profile import Profile, StopProfile, load_profile


def test_defaults_without_file() -> None:
    profile = load_profile(None)
    assert profile == Profile()
    assert profile.fidelity == "kubelet"
    assert profile.kubelet_version == "v1.20.2"
    assert profile.capacity.memory == "3840Mi"
    assert profile.capacity.ephemeral_storage == "0"
    assert profile.stop.resyncs == [0.0, 1.6]
    assert profile.kubelet_qps == 10.0  # the Go hollow kubelet's client
    assert profile.kubelet_burst == 20


def test_yaml_file_overrides_and_keeps_other_defaults(tmp_path: Path) -> None:
    path = tmp_path / "profile.yaml"
    path.write_text(
        "fidelity: lite\n"
        "kubelet_qps: 20\n"
        "capacity:\n"
        "  cpu: '8'\n"
        "  ephemeral-storage: 100Gi\n"
        "start:\n"
        "  status_delay: 0.05\n"
        "stop:\n"
        "  resyncs: [0.5]\n"
        "extra_labels:\n"
        "  topology.kubernetes.io/zone: z1\n"
    )
    profile = load_profile(path)
    assert profile.fidelity == "lite"
    assert profile.kubelet_qps == 20.0
    assert profile.capacity.cpu == "8"
    assert profile.capacity.ephemeral_storage == "100Gi"
    assert profile.capacity.memory == "3840Mi"  # untouched default inside the section
    assert profile.start.status_delay == 0.05
    assert profile.start.relist_period == 1.0
    assert profile.stop.resyncs == [0.5]
    assert profile.stop.delete_after == StopProfile().delete_after  # untouched default
    assert profile.extra_labels == {"topology.kubernetes.io/zone": "z1"}


def test_command_line_overrides_file_and_none_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("kubelet_qps: 20\nlease_duration: 60\n")
    profile = load_profile(path, kubelet_qps=50.0, lease_duration=None, events=True)
    assert profile.kubelet_qps == 50.0
    assert profile.lease_duration == 60
    assert profile.events is True


def test_empty_file_is_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing here\n")
    assert load_profile(path) == Profile()


def _user_error(path: Path | None, **overrides: object) -> UserError:
    with pytest.raises(UserError) as info:
        load_profile(path, **overrides)
    assert info.value.exit_code == 2
    assert "\n" not in info.value.format_message()
    return info.value


def test_unknown_top_level_field_rejected(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("kubelet_qsp: 20\n")
    error = _user_error(path)
    assert "kubelet_qsp" in error.format_message()


def test_unknown_nested_field_rejected(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("capacity:\n  gpus: '1'\n")
    assert "gpus" in _user_error(path).format_message()


def test_wrong_type_rejected(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("lease_duration: forty\n")
    assert "lease_duration" in _user_error(path).format_message()


def test_invalid_fidelity_rejected(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("fidelity: perfect\n")
    assert "fidelity" in _user_error(path).format_message()
    assert "fidelity" in _user_error(None, fidelity="perfect").format_message()


def test_invalid_proxy_endpoints_rejected() -> None:
    assert "proxy_endpoints" in _user_error(None, proxy_endpoints="ipvs").format_message()


def test_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("start: [unclosed\n")
    message = _user_error(path).format_message()
    assert "not valid YAML" in message
    assert str(path) in message


def test_yaml_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- fidelity: lite\n")
    message = _user_error(path).format_message()
    assert "mapping" in message
    assert str(path) in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert str(path) in _user_error(path).format_message()


def test_a_runtime_without_slots_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("start: {runtime_slots: 0}\n")
    assert "runtime_slots" in _user_error(path).format_message()
