"""The isolation controller against an in-memory model of an auth-enabled bk-cmdb.

``AuthOnCmdb`` answers ``batch_create_instance_association`` the way bk-cmdb does with
IAM on (src/ac/parser/topolatest.go, then topo, then core): the parse stage walks the
details in order and refuses the whole request at the first id <= 0 or the first host
that does not exist (1199045); an "unnamed" poison source id makes topo panic (1199999);
otherwise each detail gets its per-index answer (1101073 for a missing switch, created,
or already exists). Answers go through ``classify_response`` as real JSON bodies.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.core.answer import Answer, classify_response
from syncd.core.details import IndexKind
from syncd.core.isolate import (
    UNIFORM_LIMIT,
    Detail,
    IsolationBudget,
    Settled,
    isolation_bound,
    settle_batch,
)
from syncd.core.refusal import Scope, looked_up_sides
from syncd.runtime.metrics import Metrics

SWITCH_HOST = looked_up_sides("bk_switch", "host")
TOPO_PANIC = "'topo' Internal Server Error"
TOPO_PANIC_ZH = "'topo' 服务器内部错误"


@dataclass
class AuthOnCmdb:
    switches: set[int]
    hosts: set[int]
    poison: set[int] = field(default_factory=set)
    """Source ids whose detail makes topo refuse the whole request without naming it."""
    relation: str | None = None
    """'permission' or 'model': every request is refused for the relation."""
    gateway: str = "apigw"
    lang: str = "en"
    pairs: dict[Detail, int] = field(default_factory=dict)
    requests: list[list[Detail]] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def send(self, details: Sequence[Detail]) -> Answer:
        self.requests.append(list(details))
        return classify_response(200, {}, json.dumps(self._answer(details)).encode())

    def _refuse(self, code: int, message: str) -> dict[str, object]:
        if self.gateway == "apigw":  # the API server's BaseResp: bk_error_*, no data
            return {"result": False, "bk_error_code": code, "bk_error_msg": message}
        return {"result": False, "code": code, "message": message, "data": None}

    def _answer(self, details: Sequence[Detail]) -> dict[str, object]:
        if self.relation == "permission":
            return {**self._refuse(9900403, "Do not have access permission."), "permission": {}}
        if self.relation == "model":
            return self._refuse(1199045, "model association [map[bk_obj_asst_id:x]] not found")
        for src, dst in details:
            if src <= 0:
                return self._refuse(1199045, "invalid bk_inst_id value")
            if dst <= 0:
                return self._refuse(1199045, "invalid bk_asst_inst_id value")
            if dst not in self.hosts:
                return self._refuse(1199045, f"host {dst} has no relations")
        if any(src in self.poison for src, _ in details):
            return self._refuse(1199999, TOPO_PANIC if self.lang == "en" else TOPO_PANIC_ZH)
        created: dict[str, int] = {}
        errors: dict[str, str] = {}
        for index, detail in enumerate(details):
            if detail in self.pairs:
                errors[str(index)] = (
                    "the associations bk_switch->host already exist"
                    if self.lang == "en"
                    else "关联关系 bk_switch->host 重复"
                )
            elif detail[0] not in self.switches:
                errors[str(index)] = (
                    "the association inst is not exist" if self.lang == "en" else "关联实例不存在"
                )
            else:
                self.pairs[detail] = next(self.ids)
                created[str(index)] = self.pairs[detail]
        return {
            "result": True,
            "code": 0,
            "message": "success",
            "data": {"success_created": created, "error_msg": errors},
        }


def expected(cmdb: AuthOnCmdb, detail: Detail) -> set[IndexKind]:
    """What the CMDB may say about one detail: a detail with an invalid source id and a
    missing host is named by whichever the parser meets first in the batch."""
    src, dst = detail
    kinds = set()
    if src <= 0 or dst <= 0:
        kinds.add(IndexKind.INVALID_ID)
    if dst > 0 and dst not in cmdb.hosts:
        kinds.add(IndexKind.MISSING_TARGET)
    if kinds:
        return kinds
    if src in cmdb.poison:
        return {IndexKind.OTHER}
    if src not in cmdb.switches:
        return {IndexKind.MISSING_SOURCE}
    return {IndexKind.CREATED}


WHOLE_REQUEST = {IndexKind.INVALID_ID, IndexKind.MISSING_TARGET, IndexKind.OTHER}


def whole_request_poison(cmdb: AuthOnCmdb, details: Sequence[Detail]) -> int:
    return sum(1 for d in details if expected(cmdb, d) & WHOLE_REQUEST)


# -- the named cases -----------------------------------------------------------------------


async def test_no_refusal_costs_no_extra_request() -> None:
    cmdb = AuthOnCmdb(switches={1, 2}, hosts={10, 11})
    iso = await settle_batch([(1, 10), (2, 11), (3, 10)], cmdb.send, looked_up=SWITCH_HOST)
    assert iso.extra_requests == 0 and len(cmdb.requests) == 1
    assert [o.kind for o in iso.outcomes] == [
        IndexKind.CREATED,
        IndexKind.CREATED,
        IndexKind.MISSING_SOURCE,  # a missing switch is per index, even with auth on
    ]


async def test_missing_host_fails_its_details_and_the_rest_is_sent_at_once() -> None:
    cmdb = AuthOnCmdb(switches=set(range(1, 10)), hosts={10, 11, 12})
    details = [(1, 10), (2, 999), (3, 11), (4, 999), (5, 12)]
    iso = await settle_batch(details, cmdb.send, looked_up=SWITCH_HOST, batch_ids=iter([7, 8]))
    assert iso.extra_requests == 1
    assert cmdb.requests[1] == [(1, 10), (3, 11), (5, 12)]
    first, second = iso.exchanges
    assert (first.batch, second.batch) == (7, 8)
    for index in (1, 3):
        outcome = iso.outcomes[index]
        assert outcome.kind is IndexKind.MISSING_TARGET and outcome.reason == "missing_target"
        assert outcome.exchange is first and outcome.position == index
        assert "host 999 has no relations" in outcome.message
    for index, position in ((0, 0), (2, 1), (4, 2)):
        outcome = iso.outcomes[index]
        assert outcome.kind is IndexKind.CREATED and outcome.exchange is second
        assert outcome.position == position and outcome.association_id is not None


async def test_invalid_ids_are_named_and_held_back() -> None:
    cmdb = AuthOnCmdb(switches={1, 2}, hosts={10})
    iso = await settle_batch([(0, 10), (1, 10), (2, 0)], cmdb.send, looked_up=SWITCH_HOST)
    assert [o.kind for o in iso.outcomes] == [
        IndexKind.INVALID_ID,
        IndexKind.CREATED,
        IndexKind.INVALID_ID,
    ]
    assert iso.extra_requests == 2


async def test_unnamed_poison_is_bisected_to_stand_alone() -> None:
    cmdb = AuthOnCmdb(switches=set(range(1, 300)), hosts={10}, poison={77})
    details = [(s, 10) for s in range(1, 201)]
    iso = await settle_batch(details, cmdb.send, looked_up=SWITCH_HOST)
    bad = iso.outcomes[76]
    assert bad.kind is IndexKind.OTHER and TOPO_PANIC in bad.message
    assert bad.exchange is not None and bad.exchange.indexes == (76,)
    assert all(o.kind is IndexKind.CREATED for i, o in enumerate(iso.outcomes) if i != 76)
    assert 0 < iso.extra_requests <= isolation_bound(1, 200)
    assert len(cmdb.pairs) == 199


async def test_relation_level_refusal_is_never_bisected() -> None:
    for relation in ("permission", "model"):
        cmdb = AuthOnCmdb(switches={1}, hosts={10}, relation=relation)
        iso = await settle_batch([(1, 10), (2, 999)] * 50, cmdb.send, looked_up=SWITCH_HOST)
        assert len(cmdb.requests) == 1 and iso.extra_requests == 0
        assert iso.refusal is not None and iso.refusal.scope is Scope.RELATION
        assert iso.refusal.fix
        assert {o.settled for o in iso.outcomes} == {Settled.REQUEST}


async def test_relation_refused_midway_stops_sending() -> None:
    cmdb = AuthOnCmdb(switches=set(range(1, 100)), hosts={10}, poison={3})
    calls = 0

    async def send(details: Sequence[Detail]) -> Answer:
        nonlocal calls
        calls += 1
        if calls == 3:  # e.g. the user lost its permission while we bisect
            cmdb.relation = "permission"
        return await cmdb.send(details)

    iso = await settle_batch([(s, 10) for s in range(1, 65)], send, looked_up=SWITCH_HOST)
    assert len(cmdb.requests) == 3
    assert iso.refused_by is iso.exchanges[2]
    undecided = [o for o in iso.outcomes if o.exchange is iso.refused_by]
    assert undecided and all(o.settled is Settled.REQUEST for o in undecided)
    assert len(iso.outcomes) == 64


async def test_budget_defers_the_rest_to_the_next_cycle() -> None:
    cmdb = AuthOnCmdb(switches=set(range(1, 300)), hosts={10}, poison={5, 150})
    budget = IsolationBudget(3)
    iso = await settle_batch(
        [(s, 10) for s in range(1, 201)], cmdb.send, looked_up=SWITCH_HOST, budget=budget
    )
    assert iso.extra_requests == 3 and budget.left == 0
    deferred = [o for o in iso.outcomes if o.settled is Settled.DEFERRED]
    assert deferred and all(o.exchange is None for o in deferred)
    # Spent: the next batch of the cycle cannot isolate at all.
    again = await settle_batch([(5, 10), (6, 10)], cmdb.send, budget=budget)
    assert {o.settled for o in again.outcomes} == {Settled.DEFERRED}


async def test_a_batch_refused_detail_by_detail_is_about_the_request() -> None:
    cmdb = AuthOnCmdb(switches=set(range(1, 300)), hosts={10}, poison=set(range(1, 201)))
    iso = await settle_batch([(s, 10) for s in range(1, 201)], cmdb.send, uniform_limit=8)
    assert iso.refusal is not None and iso.refusal.scope is Scope.RELATION
    assert "same words" in iso.refusal.fix
    assert iso.extra_requests < 2 * 8 + 8  # stops after 8 singletons, not 400 requests
    assert len(iso.outcomes) == 200


async def test_bad_answer_fails_the_request_without_bisecting() -> None:
    async def send(details: Sequence[Detail]) -> Answer:
        created = {str(i): 5 for i in range(len(details))}
        body = {"result": True, "code": 0, "data": {"success_created": created}}
        return classify_response(200, {}, json.dumps(body).encode())

    iso = await settle_batch([(1, 2), (3, 4)], send)
    assert iso.extra_requests == 0
    assert all(o.settled is Settled.REQUEST and "two details" in o.message for o in iso.outcomes)


# -- properties ----------------------------------------------------------------------------

ids = st.integers(min_value=-1, max_value=40)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[AuthOnCmdb, list[Detail]]:
    switches = draw(st.sets(st.integers(1, 40), min_size=1))
    hosts = draw(st.sets(st.integers(1, 40), min_size=1))
    poison = draw(st.sets(st.integers(1, 40), max_size=3))
    gateway = draw(st.sampled_from(["apigw", "esb"]))
    lang = draw(st.sampled_from(["en", "zh"]))
    details = draw(st.lists(st.tuples(ids, ids), min_size=1, max_size=200, unique=True))
    return AuthOnCmdb(switches, hosts, poison, gateway=gateway, lang=lang), details


@settings(max_examples=300, deadline=None)
@given(worlds())
async def test_every_detail_decided_once_and_every_healthy_one_created(
    world: tuple[AuthOnCmdb, list[Detail]],
) -> None:
    cmdb, details = world
    iso = await settle_batch(details, cmdb.send, looked_up=SWITCH_HOST, uniform_limit=10**6)
    assert [o.index for o in iso.outcomes] == list(range(len(details)))
    for outcome in iso.outcomes:
        detail = details[outcome.index]
        assert outcome.settled is Settled.ANSWERED
        assert outcome.kind in expected(cmdb, detail), (detail, outcome)
        # Decided under a request that carried it, at the position it had there.
        assert outcome.exchange is not None and outcome.position is not None
        assert outcome.exchange.indexes[outcome.position] == outcome.index
    # Every healthy detail is in the CMDB, created exactly once.
    healthy = {d for d in details if expected(cmdb, d) == {IndexKind.CREATED}}
    assert set(cmdb.pairs) == healthy
    # Distinct request numbers; bounded cost.
    assert len({ex.batch for ex in iso.exchanges}) == len(iso.exchanges)
    poison = whole_request_poison(cmdb, details)
    assert iso.extra_requests <= isolation_bound(poison, len(details))
    if poison == 0:
        assert iso.extra_requests == 0


@settings(max_examples=150, deadline=None)
@given(worlds(), st.integers(min_value=0, max_value=12))
async def test_budget_bounds_the_cost_and_still_decides_each_detail_once(
    world: tuple[AuthOnCmdb, list[Detail]], limit: int
) -> None:
    cmdb, details = world
    budget = IsolationBudget(limit)
    iso = await settle_batch(details, cmdb.send, looked_up=SWITCH_HOST, budget=budget)
    assert iso.extra_requests <= limit and budget.spent == iso.extra_requests
    if iso.refusal is not None:  # only the same-words guard can refuse here
        assert whole_request_poison(cmdb, details) >= UNIFORM_LIMIT
    assert len(cmdb.requests) == 1 + iso.extra_requests
    assert [o.index for o in iso.outcomes] == list(range(len(details)))
    for outcome in iso.outcomes:
        if outcome.settled is Settled.DEFERRED:
            assert outcome.exchange is None
        elif outcome.kind is IndexKind.CREATED:
            assert cmdb.pairs[details[outcome.index]] == outcome.association_id


@settings(max_examples=50, deadline=None)
@given(worlds(), st.sampled_from(["permission", "model"]))
async def test_relation_refusals_are_never_bisected(
    world: tuple[AuthOnCmdb, list[Detail]], relation: str
) -> None:
    cmdb, details = world
    cmdb.relation = relation
    iso = await settle_batch(details, cmdb.send, looked_up=SWITCH_HOST)
    assert len(cmdb.requests) == 1 and iso.extra_requests == 0
    assert iso.refusal is not None and iso.refusal.fix
    assert all(o.settled is Settled.REQUEST for o in iso.outcomes)


def test_isolation_requests_metric() -> None:
    metrics = Metrics(process_metrics=False)
    metrics.record_isolation("switch-host", 0)
    metrics.record_isolation("switch-host", 3)
    metrics.record_isolation("switch-host", 2)
    text = metrics.render()[0].decode()
    assert 'syncd_isolation_requests_total{relation="switch-host"} 5.0' in text


async def test_stop_defers_what_is_undecided() -> None:
    cmdb = AuthOnCmdb(switches=set(range(1, 300)), hosts={10}, poison={5})
    stopping = False

    async def send(details: Sequence[Detail]) -> Answer:
        nonlocal stopping
        stopping = True  # e.g. SIGTERM arrives while the first request is in flight
        return await cmdb.send(details)

    iso = await settle_batch([(s, 10) for s in range(1, 11)], send, stop=lambda: stopping)
    assert len(cmdb.requests) == 1 and iso.extra_requests == 0
    assert len(iso.deferred) == 10
    assert {o.message for o in iso.deferred} == {"isolation stopped"}


async def test_decided_by_groups_each_request_with_what_it_decided() -> None:
    cmdb = AuthOnCmdb(switches=set(range(1, 10)), hosts={10, 11})
    details = [(1, 10), (2, 999), (3, 11), (4, 998)]
    iso = await settle_batch(details, cmdb.send, looked_up=SWITCH_HOST)
    groups = iso.decided_by()
    assert [ex.batch for ex, _ in groups] == [1, 2, 3]
    assert [[o.index for o in outcomes] for _, outcomes in groups] == [[1], [3], [0, 2]]
    assert [o.position for o in groups[2][1]] == [0, 1]
    # Every detail appears in exactly one group.
    assert sorted(o.index for _, outcomes in groups for o in outcomes) == [0, 1, 2, 3]


# -- a settled batch as rows and lines (syncd.core.isolate.batch_outcome) ---------------------


async def test_batch_outcome_logs_each_detail_once_under_its_request() -> None:
    from syncd.core.isolate import batch_outcome

    cmdb = AuthOnCmdb(switches={1, 2}, hosts={1001, 1002}, poison={2})
    details = [(1, 1001), (1, 999), (2, 1002), (1, 1002), (3, 1001)]
    iso = await settle_batch(details, cmdb.send, looked_up=SWITCH_HOST)
    out = batch_outcome(details, iso)
    # The first request was refused naming host 999; every later one has its own lines.
    assert len(out.requests) == len(cmdb.requests) == 1 + out.isolation_requests
    assert out.requests[0].lines and out.requests[0].lines[0][1]["reason"] == "missing_target"
    logged = [(f["bk_inst_id"], f["bk_asst_inst_id"]) for r in out.requests for _, f in r.lines]
    assert sorted(logged) == sorted(details) and out.lines == [
        line for r in out.requests for line in r.lines
    ]
    for request, sent in zip(out.requests, cmdb.requests, strict=True):
        for _, fields in request.lines:  # index = position within that request
            assert sent[fields["index"]] == (fields["bk_inst_id"], fields["bk_asst_inst_id"])
    assert {(s, d) for s, d, _ in out.created} == {(1, 1001), (1, 1002)}
    kinds = {(f.src, f.dst): (f.reason, f.isolated) for f in out.failed}
    assert kinds == {
        (1, 999): ("missing_target", True),  # named by a whole-request refusal
        (2, 1002): ("other", True),  # bisected: refused alone
        (3, 1001): ("missing_source", False),  # per index
    }
    assert out.refusal is None and out.deferred == []


async def test_batch_outcome_of_a_relation_refusal_carries_the_fix() -> None:
    from syncd.core.isolate import batch_outcome

    cmdb = AuthOnCmdb(switches={1}, hosts={1001}, relation="model")
    details = [(1, 1001)]
    out = batch_outcome(details, await settle_batch(details, cmdb.send, looked_up=SWITCH_HOST))
    assert out.refusal is not None and "bk_obj_asst_id" in out.refusal
    assert out.answer is not None and "bk_obj_asst_id" in out.answer.hint
    assert [f.reason for f in out.failed] == ["request"]
    assert out.isolation_requests == 0


async def test_batch_outcome_defers_what_the_budget_cannot_pay() -> None:
    from syncd.core.isolate import batch_outcome

    cmdb = AuthOnCmdb(switches={1}, hosts=set(range(1001, 1201)), poison={1})
    details = [(1, h) for h in range(1001, 1201)]
    iso = await settle_batch(details, cmdb.send, looked_up=SWITCH_HOST, budget=IsolationBudget(2))
    out = batch_outcome(details, iso)
    assert out.isolation_requests == 2 and out.deferred
    decided = len(out.created) + len(out.exists) + len(out.failed)
    assert decided + len(out.deferred) == len(details)
    assert not any(f.reason == "deferred" for f in out.failed)
