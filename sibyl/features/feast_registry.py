"""What `sibyl features check` needs from a Feast file registry (`registry.db`, a serialized feast.core.Registry):
entities with their join keys and types, feature views with their entities, features, types and ttl, and the
names of on-demand views. Read with the same hand-written protobuf reader as the values (feast_codec), field
numbers from Feast's Registry/FeatureView/Entity/Feature protos (feast 0.67).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sibyl.features.codec import DecodeError
from sibyl.features.feast_codec import proto_fields

# feast.types.ValueType.Enum: what a model input can take
SCALARS = {3: "INT32", 4: "INT64", 5: "DOUBLE", 6: "FLOAT", 7: "BOOL", 8: "UNIX_TIMESTAMP"}
LISTS = {13: "INT32_LIST", 14: "INT64_LIST", 15: "DOUBLE_LIST", 16: "FLOAT_LIST", 17: "BOOL_LIST"}
KEY_TYPES = {1: "bytes", 2: "string", 3: "int32", 4: "int64"}  # join key types sibyl encodes


@dataclass
class Entity:
    name: str
    join_key: str
    value_type: int


@dataclass
class View:
    name: str
    entities: list[str]
    features: dict[str, int]  # feature -> ValueType
    ttl_s: float  # 0: never expires


@dataclass
class Registry:
    entities: dict[str, Entity] = field(default_factory=dict)
    views: dict[str, View] = field(default_factory=dict)
    on_demand: set[str] = field(default_factory=set)


def _text(value: int | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else ""


def _sub(value: int | bytes) -> bytes:
    return value if isinstance(value, bytes) else b""


def _int(value: int | bytes) -> int:
    return value if isinstance(value, int) else 0


def _spec(raw: bytes) -> dict[int, list[int | bytes]]:
    """The fields of an object's `spec` (field 1), by number."""
    spec = next((_sub(v) for n, _, v in proto_fields(raw) if n == 1), b"")
    out: dict[int, list[int | bytes]] = {}
    for n, _, v in proto_fields(spec):
        out.setdefault(n, []).append(v)
    return out


def _one(spec: dict[int, list[int | bytes]], number: int) -> int | bytes:
    return spec.get(number, [b""])[-1]


def _entity(raw: bytes) -> tuple[str, Entity]:
    spec = _spec(raw)  # EntitySpecV2: name 1, value_type 2, join_key 4, project 9
    name = _text(_one(spec, 1))
    return _text(_one(spec, 9)), Entity(name, _text(_one(spec, 4)) or name, _int(_one(spec, 2)))


def _view(raw: bytes) -> tuple[str, View]:
    spec = _spec(raw)  # FeatureViewSpec: name 1, project 2, entities 3, features 4, ttl 6
    features = {}
    for item in spec.get(4, []):  # FeatureSpecV2: name 1, value_type 2
        parts = {fn: fv for fn, _, fv in proto_fields(_sub(item))}
        features[_text(parts.get(1, b""))] = _int(parts.get(2, 0))
    ttl = {fn: fv for fn, _, fv in proto_fields(_sub(_one(spec, 6)))}  # google.protobuf.Duration
    ttl_s = _int(ttl.get(1, 0)) + _int(ttl.get(2, 0)) / 1e9
    view = View(_text(_one(spec, 1)), [_text(e) for e in spec.get(3, [])], features, ttl_s)
    return _text(_one(spec, 2)), view


def read_registry(path: str | Path, project: str) -> Registry:
    """The objects of one project; ValueError when the file is not a Feast registry."""
    try:
        data = Path(path).read_bytes()
        fields = proto_fields(data)
    except (OSError, DecodeError) as exc:
        raise ValueError(f"{path}: not a readable Feast file registry ({exc})") from None
    registry = Registry()
    for number, _, value in fields:
        if not isinstance(value, bytes):
            continue
        if number == 1:  # entities
            owner, entity = _entity(value)
            if owner == project:
                registry.entities[entity.name] = entity
        elif number in (6, 14):  # feature_views, stream_feature_views: the same fields of their spec
            owner, view = _view(value)
            if owner == project:
                registry.views[view.name] = view
        elif number == 8:  # on_demand_feature_views: spec name 1, project 2
            spec = _spec(value)
            if _text(_one(spec, 2)) == project:
                registry.on_demand.add(_text(_one(spec, 1)))
    return registry
