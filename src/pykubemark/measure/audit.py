"""Count requests from the apiserver's audit log: the cluster's own accounting.

Each request is counted once (by audit ID) at the first stage logged for it, so a watch
counts when it starts, not when it ends. Requests are keyed by user, verb, resource and
subresource — the rows of the reference tables — and list/watch selectors are kept so
the set of watches can be compared, with node names folded to ``<node>``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import msgspec


class _User(msgspec.Struct):
    username: str = ""


class _ObjectRef(msgspec.Struct):
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    apiGroup: str = ""


class _Status(msgspec.Struct):
    code: int = 0


class _Event(msgspec.Struct):
    auditID: str = ""
    stage: str = ""
    verb: str = ""
    requestURI: str = ""
    userAgent: str = ""
    requestReceivedTimestamp: str = ""
    stageTimestamp: str = ""
    user: _User = msgspec.field(default_factory=_User)
    objectRef: _ObjectRef | None = None
    responseStatus: _Status | None = None


class Request(msgspec.Struct, frozen=True):
    user: str
    verb: str
    resource: str
    subresource: str
    name: str
    namespace: str
    uri: str
    user_agent: str
    time: dt.datetime
    code: int
    #: The apiserver's own time on the request, receipt to the last byte of the answer;
    #: None for a watch (its first line is when its response started).
    seconds: float | None = None

    @property
    def row(self) -> tuple[str, str, str]:
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return (self.user, self.verb, resource)

    @property
    def initial_list(self) -> bool:
        """A LIST, or the streaming list that replaces it since 1.35 (a WATCH asking
        for its initial events): where an informer (re)starts."""
        return self.verb == "list" or (self.verb == "watch"
                                       and "sendInitialEvents=true" in self.uri)

    def selectors(self) -> dict[str, str]:
        query = parse_qs(urlsplit(self.uri).query)
        return {k: v[0] for k, v in query.items() if k in ("fieldSelector", "labelSelector")}


_decoder = msgspec.json.Decoder(_Event)


def _parse_time(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def read_audit(path: Path | str, *, since: dt.datetime | None = None,
               until: dt.datetime | None = None, users: Iterable[str] | None = None
               ) -> Iterator[Request]:
    """Requests received in [since, until), optionally only from ``users``."""
    wanted = set(users) if users is not None else None
    seen: set[str] = set()
    with open(path, "rb") as handle:
        for line in handle:
            try:
                event = _decoder.decode(line)
            except msgspec.DecodeError:
                continue  # a line cut by rotation or a write in progress
            if event.auditID in seen:
                continue
            seen.add(event.auditID)
            if wanted is not None and event.user.username not in wanted:
                continue
            when = _parse_time(event.requestReceivedTimestamp)
            if (since and when < since) or (until and when >= until):
                continue
            ref = event.objectRef or _ObjectRef()
            seconds = None
            if (event.stage == "ResponseComplete" and event.verb != "watch"
                    and event.stageTimestamp):
                seconds = (_parse_time(event.stageTimestamp) - when).total_seconds()
            yield Request(
                user=event.user.username, verb=event.verb, resource=ref.resource or "",
                subresource=ref.subresource, name=ref.name, namespace=ref.namespace,
                uri=event.requestURI, user_agent=event.userAgent, time=when,
                code=event.responseStatus.code if event.responseStatus else 0,
                seconds=seconds,
            )


def count_rows(requests: Iterable[Request]) -> Counter[tuple[str, str, str]]:
    return Counter(r.row for r in requests)


def watch_set(requests: Iterable[Request], node_names: Iterable[str]) -> set[tuple[str, str, str]]:
    """(user, resource, selectors) of every list/watch, node names replaced by <node>."""
    names = sorted(set(node_names), key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(n) for n in names)) if names else None
    out = set()
    for request in requests:
        if request.verb not in ("list", "watch"):
            continue
        selectors = ",".join(f"{k}={v}" for k, v in sorted(request.selectors().items()))
        if pattern:
            selectors = pattern.sub("<node>", selectors)
        selectors = re.sub(r"metadata\.name=[^,&]+", "metadata.name=<name>", selectors) \
            if request.resource in ("secrets", "configmaps") else selectors
        out.add((request.user, request.resource, selectors))
    return out
