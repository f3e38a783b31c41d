"""Releases as users name them, the build's derived module graph, and the hollow-node
profile each release gets (its minor's file, or the nearest one below)."""

from __future__ import annotations

import logging

import pytest

from pykubemark.errors import UserError
from pykubemark.hollow.profile import Distribution, load_profile
from pykubemark.profiles import REAL_NODES_RUNTIME, available, release_profile, runtime_profile
from pykubemark.provision.build import staging_replaces, version_ldflags, wrapper_gomod
from pykubemark.provision.releases import DEFAULT_RELEASE, Release, parse_release


@pytest.mark.parametrize(("text", "expected"), [
    ("1.37.2", Release(1, 37, 2)),
    ("v1.35.4", Release(1, 35, 4)),
    ("Kubernetes v1.36.3", Release(1, 36, 3)),
    ("v1.38.0-alpha.1.42+0123abcd", Release(1, 38, 0, "alpha.1.42")),
])
def test_a_release_is_read_as_users_and_binaries_write_it(text: str, expected: Release) -> None:
    assert Release.parse(text) == expected


def test_releases_order_and_name_their_modules() -> None:
    assert Release(1, 35, 4) < Release(1, 37, 2) < Release(1, 37, 10)
    release = Release.parse("1.37.2")
    assert (release.tag, release.staging_version, str(release)) == ("v1.37.2", "v0.37.2",
                                                                     "1.37.2")


@pytest.mark.parametrize("text", ["1.37", "latest", "v1.37.2-rc.1", ""])
def test_what_is_not_a_release_is_refused_by_name(text: str) -> None:
    with pytest.raises(UserError) as raised:
        parse_release(text)
    assert "--kubernetes-version" in str(raised.value)


GOMOD = """module k8s.io/kubernetes

go 1.26.0

require (
\tgithub.com/google/uuid v1.6.0
\tk8s.io/api v0.0.0
\tk8s.io/client-go v0.0.0
\tk8s.io/kube-openapi v0.0.0-20260721132016-d427ff9ee9ad
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/sample-controller => ./staging/src/k8s.io/sample-controller
)
"""


def test_staging_replaces_come_from_the_releases_own_gomod() -> None:
    release = Release(1, 37, 2)
    # required at v0.0.0 and replaced by a staging path; not what is replaced only
    assert staging_replaces(GOMOD, release) == {"k8s.io/api": "v0.37.2",
                                                "k8s.io/client-go": "v0.37.2"}
    text = wrapper_gomod(release, staging_replaces(GOMOD, release), "1.26.0")
    assert "require k8s.io/kubernetes v1.37.2" in text
    assert "\tk8s.io/api => k8s.io/api v0.37.2" in text and "go 1.26.0" in text


def test_the_version_ldflags_name_the_release_for_both_version_packages() -> None:
    flags = version_ldflags(Release(1, 37, 2), "2026-12-06T00:00:00Z")
    for package in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
        assert f"-X '{package}.gitVersion=v1.37.2'" in flags
        assert f"-X '{package}.gitMinor=37'" in flags


def test_each_release_takes_its_minors_profile() -> None:
    newest = max(available())
    release = Release(*newest, 2)
    chosen = release_profile(release)
    assert chosen.minor == newest and not chosen.fallback
    profile = load_profile(None, release)
    assert profile.kubelet_version == release.tag  # the release itself, not its file's
    assert profile.stream_list  # client-go's WatchListClient, on since 1.35


def test_a_release_without_a_file_takes_the_nearest_below_and_says_so(caplog) -> None:
    newest = max(available())
    future = Release(newest[0], newest[1] + 5, 0)
    with caplog.at_level(logging.WARNING):
        chosen = release_profile(future)
    assert chosen.minor == newest and chosen.fallback
    assert f"{future.major}.{future.minor}" in caplog.text
    between = [m for m in available() if m < newest]
    if between:
        minor = (between[-1][0], between[-1][1])
        gap = Release(minor[0], minor[1], 99)
        assert release_profile(gap).minor == minor


def test_a_release_older_than_every_profile_is_refused() -> None:
    oldest = min(available())
    with pytest.raises(UserError) as raised:
        release_profile(Release(oldest[0], oldest[1] - 1, 0))
    assert "no hollow-node profile" in str(raised.value)


def test_the_default_release_has_its_own_profile() -> None:
    assert Release.parse(DEFAULT_RELEASE).minor_version in available()


def test_1_20_keeps_the_struct_defaults() -> None:
    profile = load_profile(None, Release(1, 20, 2))
    assert not profile.stream_list and profile.node_status_read == "get"
    assert profile.kubelet_qps == 10.0 and profile.kubelet_version == "v1.20.2"


def test_a_profile_file_holds_only_what_changed_since_the_one_it_inherits() -> None:
    """1.37 = 1.36 + the PodCertificateRequest watch; 1.36 = 1.35 + the sandbox's own
    status write and kube-proxy's new selectors (as their recordings showed)."""
    p35, p36, p37 = (load_profile(None, Release(1, minor, 0)) for minor in (35, 36, 37))
    assert [w.path for w in p37.kubelet_watches if w not in p36.kubelet_watches] == [
        "/apis/certificates.k8s.io/v1/podcertificaterequests"]
    assert not p35.start.sandbox_status and p36.start.sandbox_status
    assert p36.start.token_delay == p35.start.token_delay  # merged key by key
    assert p35.proxy_watches != p36.proxy_watches == p37.proxy_watches
    assert p35.register == p36.register == p37.register


def test_a_runtime_profile_merges_into_the_release_and_takes_nothing_of_the_kubelet(
        tmp_path) -> None:
    """The real nodes' runtime on top of 1.37: its delays, 1.37's everything else (the
    start's first sync and tokens, the kubelet's watches, the stop's terminal phase)."""
    release = Release(1, 37, 2)
    plain = load_profile(None, release)
    timed = load_profile(runtime_profile(REAL_NODES_RUNTIME), release)
    assert timed.start.sandbox_delay != plain.start.sandbox_delay
    assert timed.start.containers_delay is not None and plain.start.containers_delay is None
    assert timed.start.first_sync == plain.start.first_sync
    assert timed.start.token_delay == plain.start.token_delay
    assert timed.stop.terminal_phase and timed.stop.kill_delay > plain.stop.kill_delay
    assert timed.kubelet_watches == plain.kubelet_watches
    # a distribution in a file replaces the release's whole, whatever its kind
    own = tmp_path / "p.yaml"
    own.write_text("start: {first_sync: {fixed: 0.5}}\n")
    assert load_profile(own, release).start.first_sync == Distribution(fixed=0.5)


def test_the_pod_is_relisted_after_a_start_from_1_36() -> None:
    assert not load_profile(None, Release(1, 35, 4)).start.relist_on_sync
    assert load_profile(None, Release(1, 36, 3)).start.relist_on_sync
    assert load_profile(None, Release(1, 37, 2)).start.relist_on_sync


def test_an_unknown_runtime_profile_is_refused_by_name() -> None:
    with pytest.raises(UserError, match=f"known: {REAL_NODES_RUNTIME}"):
        runtime_profile("gvisor-on-the-moon")


def test_a_runtime_profile_adds_no_status_write_a_release_does_not_make() -> None:
    """On 1.35 (no sandbox status of its own) the runtime's sandbox time is only time."""
    timed = load_profile(runtime_profile(REAL_NODES_RUNTIME), Release(1, 35, 4))
    assert not timed.start.sandbox_status and timed.start.sandbox_delay is not None
