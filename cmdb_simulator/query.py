"""bk-cmdb's query-builder filters: validated as the CMDB does, compiled to predicates.

Two stages, as in bk-cmdb: decoding (``QueryFilter.UnmarshalJSON`` ->
``ParseRule``, src/common/querybuilder/parser.go:37-117) fails the whole body with
1199000 for a malformed shape; validation then refuses with an invalid-key path
(e.g. ``rules[0].value``) that ends up in a 1199006 message: the top level must be
a combined rule, AND/OR, at most 20 OR rules, nesting depth 3, ``in`` lists of at
most 500 values of one basic type (ints and floats are one "numeric" type,
validate.go:41-135). Matching follows the Mongo filter each operator becomes
(types.go:351-375): ``contains`` is an unescaped, case-insensitive regex,
``not_contains`` a case-sensitive one, ``begins_with``/``ends_with`` anchor it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

Row = Mapping[str, Any]
Predicate = Callable[[Row], bool]

MAX_DEPTH = 3
MAX_OR_RULES = 20
MAX_IN_VALUES = 500
_FIELD = re.compile(r"^[a-zA-Z0-9][\w\-.]*$")
_NUMERIC_OPS = {"less", "less_or_equal", "greater", "greater_or_equal"}
_STRING_OPS = {
    "begins_with",
    "not_begins_with",
    "contains",
    "not_contains",
    "ends_with",
    "not_ends_with",
}
_DATETIME_OPS = {
    "datetime_less",
    "datetime_less_or_equal",
    "datetime_greater",
    "datetime_greater_or_equal",
}
_NO_VALUE_OPS = {"exist", "not_exist", "is_empty", "is_not_empty", "is_null", "is_not_null"}
OPERATORS = (
    {"equal", "not_equal", "in", "not_in"}
    | _NUMERIC_OPS
    | _STRING_OPS
    | _DATETIME_OPS
    | _NO_VALUE_OPS
)


class QueryError(ValueError):
    """An invalid filter; ``key`` is the CMDB's path to the offending part."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"{key}: {why}")
        self.key = key


class QueryShapeError(ValueError):
    """A filter that does not even decode (bk-cmdb answers 1199000 for the whole body)."""


def check_shape(rule: Any) -> None:
    """``ParseRule``: an object with ``condition`` (then ``rules`` a list of objects) or
    ``operator``; anything else does not decode. Null children are skipped, as in Go."""
    if not isinstance(rule, Mapping):
        raise QueryShapeError("a query filter must be a JSON object")
    if "condition" in rule:
        cond, rules = rule.get("condition"), rule.get("rules")
        if cond is not None and not isinstance(cond, str):
            raise QueryShapeError("decode as combined rule struct failed")
        if rules is None:
            return
        if not isinstance(rules, list):
            raise QueryShapeError("decode as combined rule struct failed")
        for child in rules:
            if child is not None:
                check_shape(child)
        return
    if "operator" in rule:
        for key in ("field", "operator"):
            if rule.get(key) is not None and not isinstance(rule.get(key), str):
                raise QueryShapeError("decode to rule struct failed")
        return
    raise QueryShapeError("no query filter found")


def _children(rule: Mapping[str, Any]) -> list[Any]:
    return [c for c in rule.get("rules") or [] if c is not None]


def _basic(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _go_type(value: Any) -> str:
    """validate.go getType: every int and float is one "numeric" type."""
    if isinstance(value, bool):
        return "bool"
    return "numeric" if _is_num(value) else type(value).__name__


def depth(rule: Any) -> int:
    """bk-cmdb's GetDeep: an atom is 1, a combined rule one more than its deepest child (min 1)."""
    if isinstance(rule, Mapping) and "condition" in rule:
        return max([1, *(depth(c) for c in _children(rule))]) + 1
    return 1


def validate(
    rule: Any,
    *,
    max_in: int | None = MAX_IN_VALUES,
    max_or: int | None = MAX_OR_RULES,
    max_rules: int | None = None,
    combined_top: bool = True,
) -> None:
    """Raise :class:`QueryError` for a decoded filter the CMDB would refuse (key relative
    to it). ``combined_top``: querybuilder's "query filter must be combined rules"
    (parser.go:89-100, key ""); ``max_rules``: pkg/filter's per-combined-rule cap."""
    if combined_top and "condition" not in rule:
        raise QueryError("", "query filter must be combined rules")
    _validate(rule, max_in, max_or, max_rules)
    if depth(rule) > MAX_DEPTH:
        raise QueryError("rules", f"exceed max query condition deepth: {MAX_DEPTH}")


def _validate(rule: Any, max_in: int | None, max_or: int | None, max_rules: int | None) -> None:
    if "condition" in rule:
        cond = rule.get("condition")
        if cond not in ("AND", "OR"):
            raise QueryError("condition", f"unexpected condition: {cond}")
        rules = _children(rule)
        if not rules:
            raise QueryError("rules", "combined rules shouldn't be empty")
        if cond == "OR" and max_or is not None and len(rules) > max_or:
            raise QueryError("rules", f"too many rules of OR condition: {len(rules)} max({max_or})")
        if max_rules is not None and len(rules) > max_rules:
            raise QueryError("rules", f"rules elements number is overhead, max {max_rules}")
        for i, child in enumerate(rules):
            try:
                _validate(child, max_in, max_or, max_rules)
            except QueryError as exc:
                raise QueryError(f"rules[{i}].{exc.key}".rstrip("."), str(exc)) from None
        return
    op = rule.get("operator")
    if op not in OPERATORS:
        raise QueryError("operator", f"unsupported operator: {op}")
    fld = rule.get("field")
    if not isinstance(fld, str) or not _FIELD.match(fld):
        raise QueryError("field", f"invalid field: {fld}")
    value = rule.get("value")
    if op in ("equal", "not_equal"):
        if not _basic(value):
            raise QueryError("value", "value should be a basic type")
    elif op in ("in", "not_in"):
        if not isinstance(value, list):
            raise QueryError("value", "value should be an array")
        if max_in is not None and len(value) > max_in:
            raise QueryError("value", f"elements length {len(value)} exceeds maximum {max_in}")
        if not all(_basic(v) for v in value):
            raise QueryError("value", "array elements should be basic types")
        if len({_go_type(v) for v in value}) > 1:
            raise QueryError("value", "array elements type should be the same")
    elif op in _NUMERIC_OPS:
        if not _is_num(value):
            raise QueryError("value", "value should be numeric")
    elif op in _STRING_OPS and (not isinstance(value, str) or not value):
        raise QueryError("value", "value should be a non-empty string")
    elif op in _DATETIME_OPS and (not isinstance(value, str) or not value):
        raise QueryError("value", "value should be a datetime string")


def _values(stored: Any) -> Iterable[Any]:
    """A stored field as MongoDB sees it for equality: arrays match element-wise."""
    if isinstance(stored, list):
        return stored
    return (stored,)


def _key(value: Any) -> tuple[bool, Any]:
    """Set key that keeps ``true`` apart from ``1`` while ``1`` still equals ``1.0``."""
    return (isinstance(value, bool), value)


def _hashable(value: Any) -> bool:
    return not isinstance(value, list | dict)


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def compile_rule(rule: Any) -> Predicate:
    """Turn a validated filter into a predicate over one row (a missing field is null)."""
    if "condition" in rule:
        preds = [compile_rule(child) for child in _children(rule)]
        if rule["condition"] == "AND":
            return lambda row: all(p(row) for p in preds)
        return lambda row: any(p(row) for p in preds)
    fld: str = rule["field"]
    op: str = rule["operator"]
    value = rule.get("value")
    if op == "equal":
        return lambda row: any(_same(v, value) for v in _values(row.get(fld)))
    if op == "not_equal":
        return lambda row: not any(_same(v, value) for v in _values(row.get(fld)))
    if op in ("in", "not_in"):
        wanted = {_key(v) for v in value}
        inside = op == "in"

        def member(row: Row) -> bool:
            hit = any(_key(v) in wanted for v in _values(row.get(fld)) if _hashable(v))
            return hit if inside else not hit

        return member
    if op in _NUMERIC_OPS:
        compare: dict[str, Callable[[Any], bool]] = {
            "less": lambda v: v < value,
            "less_or_equal": lambda v: v <= value,
            "greater": lambda v: v > value,
            "greater_or_equal": lambda v: v >= value,
        }
        check = compare[op]
        return lambda row: any(_is_num(v) and check(v) for v in _values(row.get(fld)))
    if op in _DATETIME_OPS:
        dt_compare: dict[str, Callable[[str], bool]] = {
            "datetime_less": lambda v: v < value,
            "datetime_less_or_equal": lambda v: v <= value,
            "datetime_greater": lambda v: v > value,
            "datetime_greater_or_equal": lambda v: v >= value,
        }
        dt_check = dt_compare[op]
        return lambda row: any(isinstance(v, str) and dt_check(v) for v in _values(row.get(fld)))
    if op in _STRING_OPS:
        negate = op.startswith("not_")
        pattern = _regex(op.removeprefix("not_"), str(value), case_blind=op == "contains")

        def test(s: str) -> bool:
            return pattern is not None and pattern.search(s) is not None

        def string_match(row: Row) -> bool:
            hit = any(isinstance(v, str) and test(v) for v in _values(row.get(fld)))
            return hit != negate

        return string_match
    if op in ("exist", "not_exist"):
        want = op == "exist"
        return lambda row: (fld in row) == want
    if op in ("is_null", "is_not_null"):
        want_null = op == "is_null"
        return lambda row: (row.get(fld) is None) == want_null
    want_empty = op == "is_empty"
    return lambda row: (row.get(fld) == []) == want_empty


def _regex(positive: str, text: str, *, case_blind: bool) -> re.Pattern[str] | None:
    """The unescaped ``$regex`` bk-cmdb builds (only ``contains`` gets ``$options: "i"``)."""
    source = {"begins_with": f"^{text}", "ends_with": f"{text}$"}.get(positive, text)
    try:
        return re.compile(source, re.IGNORECASE if case_blind else 0)
    except re.error:
        return None


def to_json(rule: Any) -> str:
    """pkg/filter ``Expression.String()``: the rule as Go marshals it (struct field order)."""

    def ordered(r: Any) -> Any:
        if isinstance(r, Mapping) and "condition" in r:
            return {"condition": r.get("condition"), "rules": [ordered(c) for c in _children(r)]}
        if isinstance(r, Mapping):
            return {"field": r.get("field"), "operator": r.get("operator"), "value": r.get("value")}
        return r

    return json.dumps(ordered(rule), separators=(",", ":"), ensure_ascii=False)


def equality_hints(rule: Any) -> dict[str, list[Any]]:
    """Fields that every match must have equal to one of some values (top-level AND only).

    Lets callers narrow the candidates with an index before running the predicate.
    """
    atoms: list[Any]
    if "condition" in rule:
        if rule["condition"] != "AND":
            return {}
        atoms = [r for r in _children(rule) if "condition" not in r]
    else:
        atoms = [rule]
    hints: dict[str, list[Any]] = {}
    for atom in atoms:
        if atom["operator"] == "equal":
            hints.setdefault(atom["field"], [atom["value"]])
        elif atom["operator"] == "in":
            hints.setdefault(atom["field"], list(atom["value"]))
    return hints


def id_lower_bound(rule: Any) -> tuple[float, bool] | None:
    """The highest ``id > v`` / ``id >= v`` of a top-level AND: (v, inclusive), or None.

    Every match has an id above it, so a caller may start an id-ordered scan there."""
    if not isinstance(rule, Mapping):
        return None
    if "condition" in rule:
        if rule["condition"] != "AND":
            return None
        atoms = [r for r in _children(rule) if isinstance(r, Mapping) and "condition" not in r]
    else:
        atoms = [rule]
    best: tuple[float, bool] | None = None
    for atom in atoms:
        value = atom.get("value")
        if atom.get("field") != "id" or isinstance(value, bool):
            continue
        if not isinstance(value, int | float) or value != value:  # NaN bounds nothing
            continue
        op = atom.get("operator")
        if op not in ("greater", "greater_or_equal"):
            continue
        candidate = (value, op == "greater_or_equal")
        if best is None or candidate[0] > best[0] or (candidate[0] == best[0] and not candidate[1]):
            best = candidate
    return best
