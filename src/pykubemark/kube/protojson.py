"""Built-in objects between their JSON shape (dicts) and the apiserver's protobuf messages.

The hollow kubelet builds and reads Nodes, Leases, CSINodes and Events as JSON-shaped
dicts; the kubelet sends and accepts them in protobuf. This converts at the edge, by the
messages' own descriptors, so the callers keep one shape. Field names in Kubernetes'
``generated.proto`` are the JSON names; only a few types are written differently in
JSON, and those are handled here: Time/MicroTime (RFC 3339 strings), Quantity (a
string), IntOrString, RawExtension and FieldsV1 (embedded JSON), Duration (Go syntax,
read only as nanoseconds here).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Collection
from typing import Any

import orjson
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor

# Imported for their side effect: the messages are in the default descriptor pool.
from pykubemark.kube.proto.api.authentication.v1 import generated_pb2 as _authentication  # noqa: F401
from pykubemark.kube.proto.api.coordination.v1 import generated_pb2 as _coordination  # noqa: F401
from pykubemark.kube.proto.api.core.v1 import generated_pb2 as _core  # noqa: F401
from pykubemark.kube.proto.api.storage.v1 import generated_pb2 as _storage  # noqa: F401

_META = "k8s.io.apimachinery.pkg.apis.meta.v1."
TIME, MICRO_TIME = _META + "Time", _META + "MicroTime"
QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
RAW_EXTENSION = "k8s.io.apimachinery.pkg.runtime.RawExtension"
FIELDS_V1 = _META + "FieldsV1"
DURATION = _META + "Duration"

#: apiVersion -> protobuf package of its group/version (those the hollow node writes).
PACKAGES = {
    "v1": "k8s.io.api.core.v1",
    "coordination.k8s.io/v1": "k8s.io.api.coordination.v1",
    "storage.k8s.io/v1": "k8s.io.api.storage.v1",
    "authentication.k8s.io/v1": "k8s.io.api.authentication.v1",
}


#: Go structs embedded in another, whose fields JSON writes inline but protobuf nests
#: under a field of this name (LocalObjectReference in key selectors, VolumeSource in
#: Volume, Handler in Probe, ...).
INLINE = frozenset({"localObjectReference", "volumeSource", "persistentVolumeSource",
                    "handler", "ephemeralContainerCommon"})


def generated_for(path: str) -> bool:
    """Whether a REST path is of a group version whose messages we have generated (the
    apiserver would answer in protobuf that we could not read otherwise)."""
    if path.startswith("/api/v1/"):
        return True
    parts = path.split("/", 4)
    return len(parts) > 3 and parts[1] == "apis" and f"{parts[2]}/{parts[3]}" in PACKAGES


#: Proto field names that are not the JSON name (go-to-protobuf's camel-casing of "APIVersion").
JSON_NAMES = {"aPIVersion": "apiVersion", "uID": "uid"}
PROTO_NAMES = {v: k for k, v in JSON_NAMES.items()}


class UnknownKind(LookupError):
    """No generated message for this apiVersion and kind: the caller stays JSON."""


#: Kinds of meta/v1 that any group version answers with.
META_KINDS = {"Status", "DeleteOptions"}


def message_class(api_version: str, kind: str) -> Any:
    package = "k8s.io.apimachinery.pkg.apis.meta.v1" if kind in META_KINDS \
        else PACKAGES.get(api_version)
    if package is None:
        raise UnknownKind(f"{api_version} {kind}")
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(f"{package}.{kind}")
    except KeyError:
        raise UnknownKind(f"{api_version} {kind}") from None
    return message_factory.GetMessageClass(descriptor)


def encode(body: dict[str, Any]) -> bytes:
    """A JSON-shaped object with apiVersion and kind as a protobuf request body."""
    from pykubemark.kube.protobuf import wrap

    api_version, kind = body.get("apiVersion", ""), body.get("kind", "")
    message = message_class(api_version, kind)()
    fill(message, {k: v for k, v in body.items() if k not in ("apiVersion", "kind")})
    return wrap(api_version, kind, message)


def decode(data: bytes) -> bytes:
    """A protobuf answer as the JSON the apiserver would have sent (bytes)."""
    return orjson.dumps(to_dict_answer(data))


def to_dict_answer(data: bytes, fields: Collection[str] | None = None) -> dict[str, Any]:
    """A protobuf answer as the dict its JSON would parse to (only the top-level
    ``fields`` when given, kind and apiVersion always)."""
    from pykubemark.kube.protobuf import unwrap

    envelope = unwrap(data)
    api_version, kind = envelope.typeMeta.apiVersion, envelope.typeMeta.kind
    message = message_class(api_version, kind)()
    message.ParseFromString(envelope.raw)
    return {"kind": kind, "apiVersion": api_version, **to_dict(message, fields)}


# -- JSON shape -> message ------------------------------------------------------------------
def _parse_time(text: str) -> tuple[int, int]:
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp()), when.microsecond * 1000


#: How each JSON key of a message type is set, worked out once per message descriptor:
#: key -> (proto field name, kind, value descriptor or owner field for inline keys).
_setters: dict[Any, dict[str, tuple[str, int, Any]]] = {}
_SET_SCALAR, _SET_MESSAGE, _SET_REPEATED, _SET_REPEATED_MESSAGE, _SET_MAP, \
    _SET_MAP_MESSAGE, _SET_INLINE = range(7)


def _setter(descriptor: Descriptor, key: str) -> tuple[str, int, Any] | None:
    setters = _setters.setdefault(descriptor, {})
    if key in setters:
        return setters[key]
    fields = descriptor.fields_by_name
    field = fields.get(key) or fields.get(PROTO_NAMES.get(key, ""))
    setter: tuple[str, int, Any] | None
    if field is None:
        owner = next((f for f in fields if f in INLINE
                      and key in fields[f].message_type.fields_by_name), None)
        setter = None if owner is None else (owner, _SET_INLINE, None)
    else:
        message_type = field.message_type
        if message_type is not None and message_type.GetOptions().map_entry:
            value_type = message_type.fields_by_name["value"].message_type
            setter = (field.name, _SET_MAP if value_type is None else _SET_MAP_MESSAGE,
                      value_type)
        elif field.is_repeated:
            setter = (field.name, _SET_REPEATED if message_type is None
                      else _SET_REPEATED_MESSAGE, message_type)
        elif message_type is None:
            setter = (field.name, _SET_SCALAR, None)
        else:
            setter = (field.name, _SET_MESSAGE, message_type)
    setters[key] = setter
    return setter


def fill(message: Any, data: dict[str, Any]) -> Any:
    """Set ``message`` from a JSON-shaped dict; keys the schema does not know are an error
    (a typo must not vanish silently)."""
    descriptor = message.DESCRIPTOR
    for key, value in data.items():
        if value is None:
            continue
        setter = _setter(descriptor, key)
        if setter is None:
            raise ValueError(f"{descriptor.full_name} has no field {key!r}")
        name, kind, value_type = setter
        if kind == _SET_SCALAR:
            setattr(message, name, value)
        elif kind == _SET_MESSAGE:
            _set_message(getattr(message, name), value_type, value)
        elif kind == _SET_REPEATED_MESSAGE:
            target = getattr(message, name)
            for item in value:
                _set_message(target.add(), value_type, item)
        elif kind == _SET_REPEATED:
            getattr(message, name).extend(value)
        elif kind == _SET_MAP:
            getattr(message, name).update(value)
        elif kind == _SET_MAP_MESSAGE:
            target = getattr(message, name)
            for k, v in value.items():
                _set_message(target[k], value_type, v)
        else:
            fill(getattr(message, name), {key: value})
    return message


def _set_message(target: Any, descriptor: Descriptor, value: Any) -> None:
    name = descriptor.full_name
    if name in (TIME, MICRO_TIME):
        target.seconds, nanos = _parse_time(value)
        if name == MICRO_TIME:
            target.nanos = nanos
    elif name == QUANTITY:
        target.string = str(value)
    elif name == INT_OR_STRING:
        if isinstance(value, int):
            target.type, target.intVal = 0, value
        else:
            target.type, target.strVal = 1, value
    elif name in (RAW_EXTENSION, FIELDS_V1):
        setattr(target, "raw" if name == RAW_EXTENSION else "Raw", orjson.dumps(value))
    elif name == DURATION:
        raise ValueError("Duration fields are not supported in protobuf bodies")
    else:
        fill(target, value)
        target.SetInParent()


# -- message -> JSON shape ------------------------------------------------------------------
# Every GET, PUT answer and watch event of a protobuf client passes through here, so each
# field's handling is worked out once per field descriptor (a plan) instead of once per
# value: this is what keeps a protobuf answer from costing the client more CPU than the
# JSON one it replaces.
_SCALAR, _MESSAGE, _REPEATED, _REPEATED_MESSAGE, _MAP, _MAP_MESSAGE, _INLINE = range(7)
_plans: dict[Any, tuple[int, str, Any]] = {}
_converters: dict[Any, Any] = {}


def _plan(field: Any) -> tuple[int, str, Any]:
    message_type = field.message_type
    if message_type is not None and message_type.GetOptions().map_entry:
        value_type = message_type.fields_by_name["value"].message_type
        plan = (_MAP, field.name, None) if value_type is None \
            else (_MAP_MESSAGE, field.name, _converter(value_type))
    elif field.is_repeated:
        plan = (_REPEATED, field.name, None) if message_type is None \
            else (_REPEATED_MESSAGE, field.name, _converter(message_type))
    elif message_type is None:
        plan = (_SCALAR, JSON_NAMES.get(field.name, field.name), None)
    elif field.name in INLINE:
        plan = (_INLINE, field.name, None)
    else:
        plan = (_MESSAGE, JSON_NAMES.get(field.name, field.name), _converter(message_type))
    _plans[field] = plan
    return plan


@functools.lru_cache(maxsize=4096)
def _format_time(seconds: int, nanos: int = 0, micro: bool = False) -> str:
    when = dt.datetime.fromtimestamp(seconds, dt.UTC)
    if micro:
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos // 1000:06d}Z"
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _time(value: Any) -> str | None:
    # the zero time, which JSON writes as null
    return _format_time(value.seconds) if value.seconds or value.nanos else None


def _micro_time(value: Any) -> str | None:
    return (_format_time(value.seconds, value.nanos, True)
            if value.seconds or value.nanos else None)


def _embedded_json(attribute: str) -> Any:
    def convert(value: Any) -> Any:
        raw = getattr(value, attribute)
        return orjson.loads(raw) if raw else {}
    return convert


def _converter(descriptor: Descriptor) -> Any:
    """How a value of this message type is written in JSON."""
    convert = _converters.get(descriptor)
    if convert is None:
        convert = {
            TIME: _time,
            MICRO_TIME: _micro_time,
            QUANTITY: lambda value: value.string,
            INT_OR_STRING: lambda value: value.intVal if value.type == 0 else value.strVal,
            RAW_EXTENSION: _embedded_json("raw"),
            FIELDS_V1: _embedded_json("Raw"),
            DURATION: lambda value: value.duration,
        }.get(descriptor.full_name, to_dict)
        _converters[descriptor] = convert
    return convert


@functools.lru_cache(maxsize=64)
def _selection(fields: tuple[str, ...]) -> dict[str, tuple[str, ...] | None]:
    """``("metadata.uid", "status")`` -> ``{"metadata": ("uid",), "status": None}``."""
    out: dict[str, tuple[str, ...] | None] = {}
    for path in fields:
        top, _, rest = path.partition(".")
        if not rest:
            out[top] = None
        elif top not in out or out[top] is not None:
            out[top] = (*(out.get(top) or ()), rest)
    return out


def to_dict(message: Any, fields: Collection[str] | None = None) -> dict[str, Any]:
    """The JSON shape of a message: the fields that are set, as the apiserver's JSON;
    with ``fields``, only those (``"metadata.uid"``: one field of a nested message), so
    that a caller reading a pod's uid and status need not convert its managedFields."""
    selection = _selection(tuple(fields)) if fields is not None else None
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        kind, name, convert = _plans.get(field) or _plan(field)
        if kind == _INLINE:  # its fields are the JSON object's own
            out.update(to_dict(value, fields))
            continue
        if selection is not None:
            if name not in selection:
                continue
            if (sub := selection[name]) is not None and kind == _MESSAGE and convert is to_dict:
                out[name] = to_dict(value, sub)
                continue
        if kind == _SCALAR:
            out[name] = value
        elif kind == _MESSAGE:
            if (converted := convert(value)) is not None:
                out[name] = converted
        elif kind == _REPEATED_MESSAGE:
            out[name] = [convert(v) for v in value]
        elif kind == _REPEATED:
            out[name] = list(value)
        elif kind == _MAP:
            out[name] = dict(value)
        else:
            out[name] = {k: convert(v) for k, v in value.items()}
    return out
