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
    from pykubemark.kube.protobuf import unwrap

    envelope = unwrap(data)
    api_version, kind = envelope.typeMeta.apiVersion, envelope.typeMeta.kind
    message = message_class(api_version, kind)()
    message.ParseFromString(envelope.raw)
    return orjson.dumps({"kind": kind, "apiVersion": api_version, **to_dict(message)})


# -- JSON shape -> message ------------------------------------------------------------------
def _parse_time(text: str) -> tuple[int, int]:
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp()), when.microsecond * 1000


def fill(message: Any, data: dict[str, Any]) -> Any:
    """Set ``message`` from a JSON-shaped dict; keys the schema does not know are an error
    (a typo must not vanish silently)."""
    fields = message.DESCRIPTOR.fields_by_name
    inline = [f for f in fields if f in INLINE]
    for key, value in data.items():
        if value is None:
            continue
        field = fields.get(key) or fields.get(PROTO_NAMES.get(key, ""))
        if field is None:
            owner = next((f for f in inline
                          if key in fields[f].message_type.fields_by_name), None)
            if owner is None:
                raise ValueError(f"{message.DESCRIPTOR.full_name} has no field {key!r}")
            fill(getattr(message, owner), {key: value})
            continue
        key = field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            target = getattr(message, key)
            value_field = field.message_type.fields_by_name["value"]
            for k, v in value.items():
                if value_field.message_type is None:
                    target[k] = v
                else:
                    _set_message(target[k], value_field.message_type, v)
        elif field.is_repeated:
            target = getattr(message, key)
            for item in value:
                if field.message_type is None:
                    target.append(item)
                else:
                    _set_message(target.add(), field.message_type, item)
        elif field.message_type is None:
            setattr(message, key, value)
        else:
            _set_message(getattr(message, key), field.message_type, value)
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
def _format_time(seconds: int, nanos: int = 0, micro: bool = False) -> str:
    when = dt.datetime.fromtimestamp(seconds, dt.UTC)
    if micro:
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos // 1000:06d}Z"
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def to_dict(message: Any) -> dict[str, Any]:
    """The JSON shape of a message: the fields that are set, as the apiserver's JSON."""
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {k: (v if value_field.message_type is None
                                   else _value(value_field.message_type, v))
                               for k, v in value.items()}
        elif field.is_repeated:
            out[field.name] = (list(value) if field.message_type is None
                               else [_value(field.message_type, v) for v in value])
        elif field.message_type is None:
            out[JSON_NAMES.get(field.name, field.name)] = value
        elif field.name in INLINE:
            out.update(to_dict(value))
        elif (converted := _value(field.message_type, value)) is not None:
            out[JSON_NAMES.get(field.name, field.name)] = converted
    return out


def _value(descriptor: Descriptor, value: Any) -> Any:
    name = descriptor.full_name
    if name in (TIME, MICRO_TIME):
        if not value.seconds and not value.nanos:
            return None  # the zero time, which JSON writes as null
        return _format_time(value.seconds, value.nanos, micro=name == MICRO_TIME)
    if name == QUANTITY:
        return value.string
    if name == INT_OR_STRING:
        return value.intVal if value.type == 0 else value.strVal
    if name == RAW_EXTENSION:
        return orjson.loads(value.raw) if value.raw else {}
    if name == FIELDS_V1:
        return orjson.loads(value.Raw) if value.Raw else {}
    if name == DURATION:
        return value.duration
    return to_dict(value)
