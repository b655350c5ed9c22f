"""Error codes and texts, exactly as BlueKing's components word them.

Clients tell per-index outcomes apart by message text only, so the texts must
be byte-for-byte those of bk-cmdb's language packs (``resources/errors``),
both Chinese and English. The gateways' own errors are English-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class Lang(Enum):
    """The language a CMDB answer is rendered in."""

    ZH = "zh-cn"
    EN = "en"


def esb_language(header: str | None) -> Lang:
    """ESB forwards ``Blueking-Language``, ``en`` when absent (esb/component/base.py:294);
    the CMDB then looks the key up exactly: ``en`` is English, anything else (``en-US``,
    ``EN``) falls back to the default Chinese pack (src/common/errors/error.go:140-150)."""
    if header is None:
        return Lang.EN
    return Lang.EN if header == "en" else Lang.ZH


def apigw_language(header: str | None) -> Lang:
    """``X-Bkcmdb-Language``: exactly ``en`` is English, anything else (or none) Chinese."""
    return Lang.EN if header == "en" else Lang.ZH


# --- CMDB codes -------------------------------------------------------------------------------

JSON_UNMARSHAL = 1199000
HTTP_INPUT_INVALID = 1199003
PARAMS_INVALID = 1199006
PARAMS_NEED_INT = 1199009
PARAMS_NEED_SET = 1199010
PARAMS_IS_INVALID = 1199011
DUPLICATE_ITEM = 1199014
XX_EXCEED_LIMIT = 1199035
INST_DATA_NIL = 1199038
PAGE_LIMIT_EXCEEDED = 1199059
INNER_MODEL_FORBIDDEN = 1199084
PARSE_AUTH_ATTRIBUTE_FAILED = 1199045
"""The API server could not parse the auth attribute; its text is the raw Go error."""
INTERNAL_SERVER_ERROR = 1199999
UNKNOWN_ERROR = 1199998
"""CCErrorUnknownOrUnrecognizedError: a plain Go error (e.g. the DB's) passed on as is."""
ASSOCIATION_ALREADY_EXIST = 1101038
OBJECT_ASSOCIATION_NOT_EXIST = 1101046
ONE_TO_ONE_VIOLATED = 1101052
ONE_TO_MANY_VIOLATED = 1101061
ASST_INST_NOT_EXIST = 1101073
INST_TO_ASST_NOT_EXIST = 1101074
AUDIT_SAVE_FAILED = 1109001
EVENT_CHAIN_NODE_NOT_EXIST = 1103007
"""CCErrEventChainNodeNotExist (src/common/errInfo.go:564): a watch cursor no longer retained."""
AUDIT_LOG_FAILED = 1109005
CORE_SERVICE_CONCURRENT = 1113053
AUTH_NOT_HAVE_PERMISSION = 1199047
AUTHORIZE_FAILED = 1199046
"""CCErrCommCheckAuthorizeFailed: the auth filter could not ask IAM (src/apiserver/service/
filter.go:281-290), e.g. a resource IAM has no action for."""
TOO_MANY_REQUESTS = 1199997
NO_PERMISSION = 9900403
"""IAM denial; its text is that of 1199047, and the answer carries a ``permission`` object."""
TOO_MANY_REQUESTS_TEXT = "too many requests"
"""The API server's limiter writes this text itself, in English whatever the language."""

# code -> (Chinese, English); ``%s``/``%d`` are filled like Go's Sprintf.
CMDB_TEXTS: dict[int, tuple[str, str]] = {
    JSON_UNMARSHAL: ("反序列化JSON数据失败", "Deserializing JSON data failed"),
    HTTP_INPUT_INVALID: ("输入参数无效", "invalid input parameter"),
    PARAMS_INVALID: ("'%s' 数据参数校验不通过", "'%s' data parameter verification does not pass"),
    PARAMS_NEED_INT: ("'%s' 参数必须是整型", "'%s' parameters must be integral"),
    PARAMS_NEED_SET: ("'%s' 未赋值", "'%s' unassigned"),
    PARAMS_IS_INVALID: ("'%s' 参数无效或不存在", "'%s' the parameter is invalid or does not exist"),
    DUPLICATE_ITEM: (
        "数据唯一性校验失败， %s 重复",
        "duplicated instances exist, fields [%s] duplicated",
    ),
    XX_EXCEED_LIMIT: (" %s 超过限制 %d", " %s exceed the limit %d"),
    INST_DATA_NIL: ("数据 %s 不能为空", "need data %s is null"),
    PAGE_LIMIT_EXCEEDED: (
        "分页查询数量超过限制的最大值, 建议值200",
        "page limit is exceeded. suggestion 200",
    ),
    INNER_MODEL_FORBIDDEN: (
        "禁止使用通用实例接口操作内置模型实例",
        "forbidden operate inner model instance with common instance API",
    ),
    ASSOCIATION_ALREADY_EXIST: ("关联关系 %s->%s 重复", "the associations %s->%s already exist"),
    OBJECT_ASSOCIATION_NOT_EXIST: ("模型的关联关系不存在", "object association does not exist."),
    ONE_TO_ONE_VIOLATED: (
        "关联关系为1:1的，不能同时关联多个实例",
        "can not create multiple instance association for a 1:1 association.",
    ),
    ONE_TO_MANY_VIOLATED: (
        "关联关系为1:n的，不能同时关联多个源模型实例",
        "The relationship is 1:n, and multiple source model instances cannot be associated "
        "at the same time.",
    ),
    ASST_INST_NOT_EXIST: ("关联实例不存在", "the association inst is not exist"),
    INST_TO_ASST_NOT_EXIST: ("被关联实例不存在", "the  inst to asst  is not exist"),
    EVENT_CHAIN_NODE_NOT_EXIST: ("事件节点不存在", "Event chain node not exist"),
    AUDIT_LOG_FAILED: ("生成操作审计日志失败", "generate audit log failed"),
    AUDIT_SAVE_FAILED: ("保存操作审计日志失败", "save audit log failed"),
    INTERNAL_SERVER_ERROR: ("'%s' 服务器内部错误", "'%s' Internal Server Error"),
    # bk-cmdb names 1113053 CCERrrCoreServiceConcurrent (a lock it could not take), but
    # its language packs word it like this.
    CORE_SERVICE_CONCURRENT: ("关联关系约束不匹配", "association constraint mismatch"),
    AUTH_NOT_HAVE_PERMISSION: ("没有操作的权限", "Do not have access permission."),
    AUTHORIZE_FAILED: ("鉴权失败", "Authorize request failed."),
    TOO_MANY_REQUESTS: (TOO_MANY_REQUESTS_TEXT, TOO_MANY_REQUESTS_TEXT),
    NO_PERMISSION: ("没有操作的权限", "Do not have access permission."),
}


def cmdb_text(code: int, lang: Lang, *args: object) -> str:
    """Render a CMDB error text; without arguments the template comes back raw, as in Go."""
    zh, en = CMDB_TEXTS[code]
    template = en if lang is Lang.EN else zh
    return template % args if args else template


UNIQUE_PAIR_INDEX = "bkcc_unique_bkInstID_bkAsstInstID_bkObjAsstID"
"""src/common/index/association.go:59-67 (added in v3.10.17); keys in this order."""


def duplicate_key_text(collection: str, obj_asst_id: str, src: int, dst: int) -> str:
    """What a lost insert race reports per index: ``err.Error()`` of the Go driver's
    ``InsertMany`` (a BulkWriteException wrapping MongoDB's E11000 text,
    src/storage/dal/mongo/local/mongo.go:656-661, src/common/metadata/result.go:287-301)."""
    server = (
        f"E11000 duplicate key error collection: cmdb.{collection} index: {UNIQUE_PAIR_INDEX} "
        f'dup key: {{ bk_inst_id: {src}, bk_asst_inst_id: {dst}, bk_obj_asst_id: "{obj_asst_id}" }}'
    )
    return f"bulk write exception: write errors: [{server}]"


class CmdbError(Exception):
    """A request-level CMDB failure: ``result: false`` with this code.

    ``filter`` errors are written by the API server's own filters (limiter, auth) as a
    bare ``metadata.BaseResp``: ``bk_error_code``/``bk_error_msg``/``permission`` and no
    ``data``, never renamed behind the API gateway. Every other error is proxied from the
    topo/host/core servers and renamed to ``code``/``message`` by the API gateway path
    from bk-cmdb 3.12.4 (src/apiserver/service/http.go:145-183). ``bare`` proxied errors
    are a BaseResp too (the scene servers' ``RespNoAuth``, rest/contexts.go:455-469):
    renamed, still without ``data``. ESB rewrites all of them.
    """

    def __init__(
        self,
        code: int,
        *args: object,
        raw: str | None = None,
        filter: bool = False,
        bare: bool = False,
        permission: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(code, *args)
        self.code = code
        self.args_ = args
        self.raw = raw
        self.filter = filter
        self.bare = bare or filter
        self.permission = permission

    def message(self, lang: Lang) -> str:
        return self.raw if self.raw is not None else cmdb_text(self.code, lang, *self.args_)


# --- API gateway (bk-apigateway's errorx) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatewayError:
    """One of the API gateway's own refusals: real HTTP status plus a 16xxxxx code."""

    status: int
    code: int
    code_name: str
    message: str

    def with_reason(self, **fields: str) -> GatewayError:
        """Append ``[key="value" ...]`` the way the gateway details its messages."""
        detail = " ".join(f'{k}="{v}"' for k, v in fields.items())
        return GatewayError(self.status, self.code, self.code_name, f"{self.message} [{detail}]")


APIGW_INVALID_ARGS = GatewayError(400, 1640001, "INVALID_ARGS", "Parameters error")
APIGW_APP_NO_PERMISSION = GatewayError(
    403, 1640301, "APP_NO_PERMISSION", "App has no permission to the resource"
)
APIGW_API_NOT_FOUND = GatewayError(404, 1640401, "API_NOT_FOUND", "API not found")
APIGW_BODY_TOO_LARGE = GatewayError(
    413, 1641301, "BODY_SIZE_LIMIT_EXCEED", "Request body size too large."
)
APIGW_RATE_LIMITED = GatewayError(
    429, 1642903, "RATE_LIMIT_RESTRICTION", "API rate limit exceeded by resource strategy"
)
APIGW_CONCURRENCY_LIMITED = GatewayError(
    429, 1642904, "CONCURRENCY_LIMIT_RESTRICTION", "Request concurrency exceeds"
)
APIGW_BAD_GATEWAY = GatewayError(502, 1650200, "BAD_GATEWAY", "Bad Gateway")
APIGW_BACKEND_TIMEOUT = GatewayError(
    504, 1650401, "REQUEST_BACKEND_TIMEOUT", "Request backend service timeout"
)

APIGW_NO_APP_CODE = "app code cannot be empty"
APIGW_NO_APP_SECRET = "please provide bk_app_secret or bk_signature to verify app"
APIGW_BAD_SECRET = "bk_app_code or bk_app_secret is incorrect"
APIGW_NO_USER = (
    "user authentication failed, please provide a valid user identity, "
    "such as bk_username, bk_token, access_token"
)

# --- legacy ESB (answers HTTP 200, codes 1306xxx) ---------------------------------------------

ESB_COMMON_ERROR = 1306000
ESB_THIRD_PARTY_ERROR = 1306201
ESB_COMPONENT_NOT_FOUND = 1306404
ESB_ARGUMENT_ERROR = 1306406
ESB_BAD_AUTH_HEADER = (
    "Parameters error, request header X-Bkapi-Authorization is not a valid JSON format string"
)
"""esb/channel/base.py:337-349: ARGUMENT_ERROR.format_prompt(...)."""
ESB_TIMEOUT_REASON = "Third-party system interface response time exceeds 30 seconds"
"""esb/outgoing.py:202-205 with REQUEST_TIMEOUT_SECS = 30 (conf/default.py:211)."""
NGINX_502_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
"""What the CMDB's front proxy answers when the API server is down: not JSON."""


def esb_not_json(body: str) -> str:
    """cc/toolkit/tools.py:93-100: a non-JSON backend answer (``allow_non_200=True``)."""
    return f"Request interface error, the response content is not a json string: {body}"


ESB_RATE_LIMITED = 1306429

ESB_NO_APP_CODE = "APP Code [bk_app_code] cannot be empty"
ESB_NO_APP_SECRET = "APP Secret [bk_app_secret] cannot be empty"
ESB_NO_USER = (
    "User authentication failed, please provide a valid user identity, "
    "such as bk_token, bk_username"
)
ESB_BAD_TOKEN = "User authentication failed, please check if the bk_token is valid"
ESB_NOT_FOUND_TEXT = "Not found, component class not found"


def esb_unknown_app(app_code: str) -> str:
    return (
        f"Invalid APP Code [bk_app_code={app_code}], "
        "please confirm if the APP Code has been registered"
    )


def esb_bad_secret(app_code: str) -> str:
    # "pelase" is ESB's own spelling.
    return (
        "APP Secret verification failed, pelase confirm if the APP Secret and "
        f"APP Code [bk_app_code={app_code}] match"
    )


def esb_rate_limited(app_code: str, api: str, limit: str) -> str:
    return (
        f"Access frequency limit, Access frequency of APP [{app_code}] to component "
        f"[/cc/{api}/] exceeds the limit; the frequency limit is [{limit}], please try again later"
    )


def esb_third_party(api: str, reason: str) -> str:
    return (
        f"Component request third-party system [CC] interface [{api}] error: {reason}, "
        "please try again later or contact component developer to handle this"
    )


def esb_param_required(name: str) -> str:
    """A component called without a path variable of its ``dest_path``: ``format`` raises
    KeyError (esb/components/component.py:100-106), answered as ARGUMENT_ERROR."""
    return f"Parameters error, param {name} is required"
