"""IAM denials: the CMDB refusing a whole request with 9900403 and a ``permission`` object.

A fixture app's ``deny`` rules name the APIs (optionally one model association or
one object) IAM refuses it. The refusal is all-or-nothing for the request and
comes with the ``permission`` object bk-cmdb's auth server builds (``GetPermissionToApply``):
system ``bk_cmdb``, one action per object touched, each with its related
resource type and, for creates, the instances the request names. Custom objects
use IAM's dynamic actions (``edit_comobj_<model id>``); hosts use the resource
pool host actions (``edit_resource_pool_host``). The resource-pool directory a
real CMDB puts in front of a host in each instance path is left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cmdb_simulator.backend import INNER_MODELS, ApiSpec
from cmdb_simulator.chain import INST_ASST
from cmdb_simulator.faults import CREATE_APIS
from cmdb_simulator.fixture import HOST, DenyRule, Fixture
from cmdb_simulator.messages import NO_PERMISSION, CmdbError
from cmdb_simulator.store import Store
from cmdb_simulator.version import CmdbVersion
from cmdb_simulator.watch import WATCHABLE, watchable

SYSTEM_ID = "bk_cmdb"
SYSTEM_NAME = "配置平台"
FIRST_MODEL_ID = 11
"""A real CMDB's built-in models take the low model ids; custom ones come after."""
_HOST_ACTIONS = {
    "view": ("view_resource_pool_host", "主机池主机查看"),
    "edit": ("edit_resource_pool_host", "主机池主机编辑"),
    "delete": ("delete_resource_pool_host", "主机池主机删除"),
}
_VERB_NAMES = {"view": "查询", "edit": "编辑", "delete": "删除"}
_DELETE_APIS = frozenset({"delete_related_inst_asso", "delete_instance_association"})
TOPO_AUTHORISED = frozenset(
    {
        "search_instance_associations",
        "search_object_instances",
        "find_object_association",
        "find_instance_association",
    }
)
"""Reads the API server lets through (``SkipAction``, src/ac/parser/topolatest.go:525-546)
and the scene server authorises after its own checks (svc/association.go:781-789);
their refusal is proxied. Writes are refused by the API server's authFilter, and so is
``list_hosts_without_biz``: the parser makes it ``{HostInstance, FindMany}``
(src/ac/parser/host.go:715-727), which IAM knows as ``view_resource_pool_host``
(src/ac/iam/adaptor.go:175-189); the host server does no auth of its own
(src/scene_server/host_server/service/findhost.go:649-686)."""
WATCH_API = "resource_watch"
_WATCH_ACTIONS = {
    "inst_asst": ("watch_inst_asst_event", "实例关联事件监听", "inst_asst_event", "实例关联事件"),
}
"""src/ac/iam/types.go:226,519, initial_actions.go:131, initial_resources.go:42."""
NEVER_AUTHORISED = frozenset({"count_instance_associations"})
"""SkipAction in the API server and no check in topo (svc/association.go:804-836)."""


def iam_can_map(api: ApiSpec, params: Mapping[str, Any], version: CmdbVersion) -> bool:
    """Whether the auth filter can turn the request into an IAM action. A watch of a
    resource the release has no IAM action for (any unknown name; ``inst_asst`` before
    3.10.10, whose adaptor has no ``WatchInstAsst``: release-v3.10.9:src/ac/iam/
    adaptor.go:386-394) passes the parse (src/ac/parser/event.go:71-76) and then fails
    ``AdaptAuthOptions`` (src/ac/iam/iam.go:1308-1312, adaptor.go:196-203). 3.10's adaptor
    has no plat, project or kube actions (release-v3.10.51: src/ac/iam/adaptor.go:398-409);
    3.15's keeps the kube ones (release-v3.15.1: adaptor.go:399-416) though its cache
    service no longer knows them, so they pass here and meet its 1199998."""
    if api.name != WATCH_API:
        return True
    resource = params.get("bk_resource")
    if resource == INST_ASST:
        return version.inst_asst_watch
    return resource in (WATCHABLE if version.tenants else watchable(version))


def _text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) and value else None


class Iam:
    """Decides denials from the fixture's per-app ``deny`` rules and words the refusal."""

    def __init__(self, fixture: Fixture, store: Store) -> None:
        self.store = store
        self._deny: dict[str, tuple[DenyRule, ...]] = {
            app.bk_app_code: app.deny for app in fixture.apps if app.deny
        }
        self._model_ids: dict[str, int] = {}
        for model in fixture.model_associations:
            self._known(model.bk_obj_id, model.bk_asst_obj_id)
        self._known(*fixture.objects, *fixture.instance_ranges)

    def _known(self, *objects: str) -> None:
        for obj in objects:
            if obj != HOST and obj not in self._model_ids:
                self._model_ids[obj] = FIRST_MODEL_ID + len(self._model_ids)

    def model_id(self, obj: str) -> int:
        """The numeric model id IAM's dynamic actions use for a custom object."""
        self._known(obj)
        return self._model_ids[obj]

    # --- the decision --------------------------------------------------------------------------

    def _objects(self, api: ApiSpec, params: Mapping[str, Any], body: Any) -> list[str]:
        """The objects a request touches: source and target of a create, else its object."""
        fields: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
        if api.name == "list_hosts_without_biz":
            return [HOST]
        if api.name == WATCH_API:
            flt = fields.get("bk_filter")
            sub = flt.get("bk_sub_resource") if isinstance(flt, Mapping) else None
            return [sub] if isinstance(sub, str) and sub else []
        if api.name in CREATE_APIS:
            model = self.store.models.get(_text(fields, "bk_obj_asst_id") or "")
            if model is not None:
                return list(dict.fromkeys((model.bk_obj_id, model.bk_asst_obj_id)))
            named = (_text(fields, "bk_obj_id"), _text(fields, "bk_asst_obj_id"))
            return list(dict.fromkeys(o for o in named if o))
        obj = params.get("bk_obj_id") or _text(fields, "bk_obj_id")
        return [obj] if isinstance(obj, str) and obj else []

    def check(
        self, app_code: str, api: ApiSpec, params: Mapping[str, Any], body: Any
    ) -> CmdbError | None:
        """The 9900403 refusal when one of the app's rules matches the request, else None."""
        rules = self._deny.get(app_code)
        if not rules:
            return None
        fields: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
        objects = self._objects(api, params, body)
        for rule in rules:
            if rule.api != api.name:
                continue
            if rule.bk_obj_asst_id is not None and rule.bk_obj_asst_id != fields.get(
                "bk_obj_asst_id"
            ):
                continue
            if rule.bk_obj_id is not None and rule.bk_obj_id not in objects:
                continue
            if api.name == WATCH_API:
                permission = self.watch_permission(str(params.get("bk_resource") or ""), objects)
            else:
                permission = self.permission(api, objects, fields)
            return CmdbError(NO_PERMISSION, filter=True, permission=permission)
        return None

    # --- the permission object -----------------------------------------------------------------

    def watch_permission(self, resource: str, objects: list[str]) -> dict[str, Any]:
        """``watch_<resource>_event`` on ``<resource>_event`` (src/ac/iam/gen_id.go:250-258); a
        sub resource is the instance, by model id (built-in models: none listed)."""
        action_id, action_name, rsc_type, type_name = _WATCH_ACTIONS.get(
            resource,
            (f"watch_{resource}_event", f"watch_{resource}_event", f"{resource}_event", resource),
        )
        related: dict[str, Any] = {
            "system_id": SYSTEM_ID,
            "system_name": SYSTEM_NAME,
            "type": rsc_type,
            "type_name": type_name,
        }
        custom = [obj for obj in objects if obj not in INNER_MODELS]
        if custom:
            related["instances"] = [
                [{"type": rsc_type, "type_name": type_name, "id": str(self.model_id(obj)),
                  "name": obj}]
                for obj in custom
            ]  # fmt: skip
        action = {"id": action_id, "name": action_name, "related_resource_types": [related]}
        return {"system_id": SYSTEM_ID, "system_name": SYSTEM_NAME, "actions": [action]}

    def permission(
        self, api: ApiSpec, objects: list[str], body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """What the caller must apply for, shaped like bk-cmdb's ``metadata.IamPermission``."""
        if api.name in CREATE_APIS:
            verb = "edit"
            pairs = self._pairs(api, body)
            ids: dict[str, list[int]] = {obj: [] for obj in objects}
            if objects:
                src_obj, dst_obj = objects[0], objects[-1]
                for src, dst in pairs:
                    ids[src_obj].append(src)
                    ids[dst_obj].append(dst)
        else:
            verb = "delete" if api.name in _DELETE_APIS else "view"
            ids = {obj: [] for obj in objects}
        actions = [self._action(obj, verb, dict.fromkeys(ids[obj])) for obj in objects]
        return {"system_id": SYSTEM_ID, "system_name": SYSTEM_NAME, "actions": actions}

    @staticmethod
    def _pairs(api: ApiSpec, body: Mapping[str, Any]) -> list[tuple[int, int]]:
        raw = body.get("details") if api.name == "batch_create_instance_association" else [body]
        out: list[tuple[int, int]] = []
        for d in raw if isinstance(raw, list) else []:
            if isinstance(d, Mapping):
                src, dst = d.get("bk_inst_id"), d.get("bk_asst_inst_id")
                if type(src) is int and type(dst) is int and src > 0 and dst > 0:
                    out.append((src, dst))
        return out

    def _action(self, obj: str, verb: str, inst_ids: Iterable[int]) -> dict[str, Any]:
        if obj == HOST:
            action_id, action_name = _HOST_ACTIONS[verb]
            rsc_type, type_name = HOST, "主机"
        else:
            rsc_type = f"comobj_{self.model_id(obj)}"
            action_id, action_name = f"{verb}_{rsc_type}", f"{obj}实例{_VERB_NAMES[verb]}"
            type_name = obj
        related: dict[str, Any] = {
            "system_id": SYSTEM_ID,
            "system_name": SYSTEM_NAME,
            "type": rsc_type,
            "type_name": type_name,
        }
        instances = [
            [{"type": rsc_type, "type_name": type_name, "id": str(i), "name": self._name(obj, i)}]
            for i in inst_ids
        ]
        if instances:
            related["instances"] = instances
        return {"id": action_id, "name": action_name, "related_resource_types": [related]}

    def _name(self, obj: str, inst_id: int) -> str:
        table = self.store.tables.get(obj)
        if table is None or not table.exists(inst_id):
            return ""
        row = table.explicit.get(inst_id) or table.generated(inst_id)
        name = row.get("bk_host_innerip" if obj == HOST else "bk_inst_name")
        return name if isinstance(name, str) else ""
