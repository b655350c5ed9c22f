"""The CMDB APIs syncd calls: ESB name, backend method and path.

The legacy ESB reaches every API as ``POST .../cc/{name}/`` with path variables
in the body; the API gateway forwards the backend method and path unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

PAGE_LIMIT = 500
"""bk-cmdb's page.limit and ``in``-array maximum for searches."""

HOST_PAGE_LIMIT = 1000
"""list_hosts_without_biz's page.limit maximum (bk-cmdb ``BasePage.Validate``); its
``host_property_filter`` has no ``in`` cap."""


@dataclass(frozen=True, slots=True)
class Api:
    name: str
    method: str
    path: str
    """Backend path; ``{bk_obj_id}``-style variables are filled from path params."""


BATCH_CREATE = Api(
    "batch_create_instance_association", "POST", "/api/v3/createmany/instassociation"
)
SEARCH_ASSOCIATIONS = Api(
    "search_instance_associations",
    "POST",
    "/api/v3/search/instance_associations/object/{bk_obj_id}",
)
COUNT_ASSOCIATIONS = Api(
    "count_instance_associations", "POST", "/api/v3/count/instance_associations/object/{bk_obj_id}"
)
FIND_OBJECT_ASSOCIATION = Api("find_object_association", "POST", "/api/v3/find/objectassociation")
DELETE_ASSOCIATIONS = Api(
    "delete_related_inst_asso", "DELETE", "/api/v3/delete/instassociation/batch"
)
SEARCH_OBJECT_INSTANCES = Api(
    "search_object_instances", "POST", "/api/v3/search/instances/object/{bk_obj_id}"
)
LIST_HOSTS = Api("list_hosts_without_biz", "POST", "/api/v3/hosts/list_hosts_without_app")
RESOURCE_WATCH = Api("resource_watch", "POST", "/api/v3/event/watch/resource/{bk_resource}")
"""A long poll: the CMDB holds it up to 20 s when no event matches."""
