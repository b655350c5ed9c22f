"""The API server's auth-attribute parse, run before IAM and before the topo server.

With authorization on (bk-cmdb's default, ``enableAuth = true`` in
src/common/auth/auth.go:29) the API server's ``authFilter`` first turns each write
into IAM resources (``parser.ParseAttribute``, src/apiserver/service/filter.go:263-275).
It reads the body with gjson, looks the model association up and, for hosts, the
host-module relation of every id named; a failure answers the **whole request** with
1199045 and the raw Go error text, in every language. Custom-object instances are not
looked up (src/ac/parser/util.go:516-527), so a missing switch still reaches the topo
server's per-index 1101073.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from cmdb_simulator.backend import INNER_MODELS, ApiSpec
from cmdb_simulator.fixture import HOST
from cmdb_simulator.store import Store
from cmdb_simulator.version import CmdbVersion

NO_MATCHED_RULES = "no matched rules"
"""The chain's finalizer when no parser added a resource (src/ac/parser/chain.go:215-224)."""

_ABSENT = object()


def _get(body: Any, key: str) -> Any:
    """gjson.GetBytes(body, key): a top-level value, or absent (non-JSON or not an object)."""
    return body.get(key, _ABSENT) if isinstance(body, Mapping) else _ABSENT


def _go_string(value: Any) -> str:
    """gjson ``Result.String()``: strings as they are, other JSON as its raw text."""
    if value is _ABSENT or value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_INT64 = 1 << 64
_SAFE_INT = 9007199254740991
_GJSON_INT = re.compile(r"-?[0-9]+")


def _wrap64(n: int) -> int:
    """Go int64 arithmetic: wrapped into [-2**63, 2**63)."""
    return (n + (1 << 63)) % _INT64 - (1 << 63)


def _go_int(value: Any) -> int:
    """gjson v1.14.2 ``Result.Int()`` (gjson.go:118-141, parseInt and safeInt at
    :2598-2630): true is 1; a string counts only if it is ``-?[0-9]+`` (no space, no
    ``+``, no fraction or exponent), wrapping like int64; a number is truncated while
    it is a safe integer, else its digits are parsed (wrapping), else Go's float
    conversion, which gives the lowest int64 on amd64; anything else is 0."""
    if value is True:
        return 1
    if isinstance(value, str):
        return _wrap64(int(value)) if _GJSON_INT.fullmatch(value, 0) else 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value if -_SAFE_INT <= value <= _SAFE_INT else _wrap64(value)
    if isinstance(value, float):
        if math.isfinite(value) and -_SAFE_INT <= value <= _SAFE_INT:
            return int(value)
        return -(1 << 63)
    return 0


def _go_value(value: Any) -> str:
    """How Go's ``%+v`` prints gjson ``Result.Value()`` inside a map: strings bare,
    ``<nil>``, numbers as float64 (``%v``), arrays as ``[a b]``, objects as
    ``map[k:v ...]`` with sorted keys (src/ac/parser/util.go:41-50)."""
    if value is _ABSENT or value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return _go_float(float(value))
    if isinstance(value, list):
        return "[" + " ".join(_go_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = (f"{k}:{_go_value(value[k])}" for k in sorted(value))
        return "map[" + " ".join(items) + "]"
    return str(value)


def _go_float(f: float) -> str:
    """Go's ``%v`` of a float64: ``strconv.FormatFloat(f, 'g', -1, 64)``, the shortest
    digits, with an exponent when it is below -4 or at least 6 (``1e+06``)."""
    if not math.isfinite(f):
        return "NaN" if f != f else ("+Inf" if f > 0 else "-Inf")
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign, digits, raw_exp = Decimal(repr(f)).as_tuple()
    ds = "".join(map(str, digits)).rstrip("0")
    exp = int(raw_exp) + len(digits) - len(ds)
    point = len(ds) + exp
    x = point - 1
    head = "-" if sign else ""
    if x < -4 or x >= 6:
        mantissa = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{head}{mantissa}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if point <= 0:
        return f"{head}0.{'0' * -point}{ds}"
    if point >= len(ds):
        return head + ds + "0" * (point - len(ds))
    return f"{head}{ds[:point]}.{ds[point:]}"


def _never(inst_id: int) -> bool:
    return False


def _array(value: Any) -> list[Any]:
    """gjson ``Result.Array()``: a list as is, a missing value empty, anything else one item."""
    if value is _ABSENT or value is None:
        return []
    return value if isinstance(value, list) else [value]


class AuthParser:
    """``ParseAttribute`` for the APIs syncd writes with; None means IAM is asked next."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def parse(
        self, api: ApiSpec, params: Mapping[str, Any], body: Any, version: CmdbVersion | None = None
    ) -> str | None:
        if api.name == "batch_create_instance_association":
            return self._create(body, many=True)
        if api.name == "add_instance_association":
            return self._create(body, many=False)
        if api.name == "delete_related_inst_asso":
            return self._delete_batch(body)
        if api.name == "delete_instance_association":
            return self._delete_one(params)
        if api.name == "resource_watch":
            return self._watch(params, body, version is None or version.inst_asst_watch)
        return None

    def _watch(self, params: Mapping[str, Any], body: Any, inst_asst: bool) -> str | None:
        # src/ac/parser/event.go:48-117: a sub resource, when present, must name a model
        # (getOneModel with gjson String(), util.go:41-50); it becomes the IAM instance.
        # Before 3.10.10 the parser looks at it only for object and mainline instances
        # (release-v3.10.9:src/ac/parser/event.go:67-85).
        parsed = ("object_instance", "mainline_instance", "inst_asst")
        if params.get("bk_resource") not in (parsed if inst_asst else parsed[:2]):
            return None
        sub = _get(_get(body, "bk_filter"), "bk_sub_resource")
        if sub is _ABSENT:
            return None
        name = _go_string(sub)
        if not self._model_exists(name):
            return f"model [map[bk_obj_id:{name}]] not found"
        return None

    def _delete_one(self, params: Mapping[str, Any]) -> str | None:
        # topolatest.go:734-800: only a numeric id matches the route's regexp (:482), and
        # no other rule matches: "no matched rules" (chain.go:215-224); getInstAssociation
        # (util.go:178-194), then the host side is looked up.
        obj, raw_id = params.get("bk_obj_id"), params.get("id")
        if not str(raw_id).isdigit():
            return NO_MATCHED_RULES
        if not isinstance(obj, str) or not obj:
            return None
        asso_id = int(str(raw_id))
        row = self.store.by_object.get(obj, {}).get(asso_id)
        if row is None:
            return f"model association [map[id:{asso_id}]] not found"
        for side, inst in (("bk_obj_id", "bk_inst_id"), ("bk_asst_obj_id", "bk_asst_inst_id")):
            if row[side] == HOST and not self.store.instance_exists(HOST, row[inst]):
                return f"host {row[inst]} has no relations"
        return None

    def _create(self, body: Any, *, many: bool) -> str | None:
        # src/ac/parser/topolatest.go:561-733; getModelAssociation: util.go:163-176.
        asst_id = _go_string(_get(body, "bk_obj_asst_id"))
        model = self.store.models.get(asst_id)
        if model is None:
            return f"model association [map[bk_obj_asst_id:{asst_id}]] not found"
        items = _array(_get(body, "details")) if many else [body]
        if not items:
            # No detail, no resource (topolatest.go:678-731): the chain's finalizer.
            return NO_MATCHED_RULES
        hosts = self.store.tables.get(HOST)
        exists = hosts.exists if hosts is not None else _never
        src_host, dst_host = model.bk_obj_id == HOST, model.bk_asst_obj_id == HOST
        for item in items:
            if type(item) is dict:  # the common case, without gjson's conversions
                src, dst = item.get("bk_inst_id", _ABSENT), item.get("bk_asst_inst_id", _ABSENT)
            else:
                src, dst = _get(item, "bk_inst_id"), _get(item, "bk_asst_inst_id")
            if type(src) is not int or src > _SAFE_INT:
                src = _go_int(src)
            if src <= 0:
                return "invalid bk_inst_id value"
            if type(dst) is not int or dst > _SAFE_INT:
                dst = _go_int(dst)
            if dst <= 0:
                return "invalid bk_asst_inst_id value"
            # generateUpdateInstanceResource (util.go:420-448): only hosts are looked up,
            # in model order (host, a built-in model, comes first).
            if src_host and not exists(src):
                return f"host {src} has no relations"
            if dst_host and not exists(dst):
                return f"host {dst} has no relations"
        return None

    def _delete_batch(self, body: Any) -> str | None:
        # topolatest.go:806-835: getOneModel({bk_obj_id: <Value()>}), util.go:41-50.
        raw = _get(body, "bk_obj_id")
        if not isinstance(raw, str) or not self._model_exists(raw):
            return f"model [map[bk_obj_id:{_go_value(raw)}]] not found"
        return None

    def _model_exists(self, obj: str) -> bool:
        if obj in INNER_MODELS or obj in self.store.tables:
            return True
        return any(obj in (m.bk_obj_id, m.bk_asst_obj_id) for m in self.store.models.values())
