"""bk-cmdb's identifier rules, checked before anything reaches the CMDB or a URL.

bk-cmdb accepts a model id (``bk_obj_id``) only when it matches
``FieldTypeStrictCharRegexp`` (``^[a-zA-Z]\\w*$``, Go's ASCII ``\\w``) and is at most
``AttributeIDMaxLength`` (128) characters (``util.ValidModelIDField``, called by the topo
server's ``object.isValid``); association kinds (``bk_asst_id``) follow the same rule. A
model association id (``bk_obj_asst_id``) is built as ``<bk_obj_id>_<bk_asst_id>_
<bk_asst_obj_id>``, so it matches the same pattern and is at most 3 x 128 + 2
characters. Anything else cannot name a real model, and in a URL path (the API gateway
puts ``bk_obj_id`` there) it could leave the path (``/../``), cut it (``#``) or start a
query (``?``).
"""

from __future__ import annotations

import re

MODEL_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
MODEL_ID_MAX = 128
ASSOCIATION_ID_MAX = 3 * MODEL_ID_MAX + 2


def check_model_id(value: str, field: str, *, limit: int = MODEL_ID_MAX) -> str:
    """``value`` if bk-cmdb allows it as a model (or model association) id; else
    ValueError saying why (the value shown escaped, as repr does)."""
    if not MODEL_ID.fullmatch(value):
        raise ValueError(
            f"{field} {value!r} is not a bk-cmdb id: a letter, then letters, digits or '_'"
        )
    if len(value) > limit:
        raise ValueError(f"{field} is {len(value)} characters long; bk-cmdb allows {limit}")
    return value
