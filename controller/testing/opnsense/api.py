"""The HTTP face of the emulator: routing, authentication and the endpoint handlers.

The order of checks is upstream's (``www/api.php``, ``Mvc/Router``, ``ApiControllerBase``):
the route is resolved first (unknown endpoint or too few path arguments: 404), then the
credentials (401), then the key's privileges (403), then a JSON body (400). Handler
answers, including what a write command answers to a GET, follow each controller.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import difflib
import html
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from controller.testing.opnsense import bulk, configxml, crud, search, settings
from controller.testing.opnsense.fields import options_of, render
from controller.testing.opnsense.messages import msg
from controller.testing.opnsense.models import Collection
from controller.testing.opnsense.rollback import RollbackTimer, restore_filter
from controller.testing.opnsense.state import EmulatorState


@dataclass(frozen=True)
class ApiKey:
    key: str
    secret: str
    # URL path prefixes the key's user may reach ("/api/firewall/alias/"); None: all.
    privileges: tuple[str, ...] | None = None


@dataclass
class Call:
    """One authenticated request, as a handler sees it."""

    method: str
    path: str
    params: dict[str, Any]  # $_REQUEST: query string and body
    post: dict[str, Any]  # $_POST: the body only
    username: str
    emulator: Emulator

    @property
    def is_post(self) -> bool:
        return self.method == "POST"

    @property
    def who(self) -> str:
        return f"{self.username}@127.0.0.1"

    @property
    def state(self) -> EmulatorState:
        return self.emulator.state


Answer = dict[str, Any] | list[Any] | Response
Handler = Callable[..., Awaitable[Answer]]


@dataclass(frozen=True)
class Route:
    handler: Handler
    required: int  # path arguments the PHP action cannot do without


@dataclass
class Emulator:
    state: EmulatorState
    keys: dict[str, ApiKey]
    rollback: RollbackTimer
    routes: dict[tuple[str, str], dict[str, Route]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.routes = build_routes(self)


# -- routing ---------------------------------------------------------------------------


def _camel(element: str) -> str:
    """str_replace('_', '', ucwords($element, '_')), as the Router builds class names."""
    return "".join(p[:1].upper() + p[1:] for p in element.split("_"))


def resolve(emu: Emulator, path: str) -> tuple[Route, list[str]] | None:
    if not path.startswith("/api/"):
        return None
    parts = [p for p in path[len("/api/") :].split("/") if p != ""]
    if len(parts) < 3:
        return None
    # Namespaces fall back to a case-insensitive match; controller files must match the
    # camel-cased name exactly; PHP method names are case-insensitive.
    module = _camel(parts[0]).lower()
    controller = _camel(parts[1])
    action = _camel(parts[2]).lower()
    table = emu.routes.get((module, controller))
    if table is None or action not in table:
        return None
    route = table[action]
    args = parts[3:]
    if len(args) < route.required:
        return None  # ParameterMismatchException: a DispatchException, so 404
    return route, args


# -- request parsing -------------------------------------------------------------------


def php_params(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """PHP's reading of form/query pairs: ``a[b]=c`` nests, ``a[]=c`` appends."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if "[" in key and key.endswith("]"):
            base, _, rest = key.partition("[")
            sub = rest[:-1]
            if sub == "":
                current = out.setdefault(base, [])
                if isinstance(current, list):
                    current.append(value)
            else:
                current = out.setdefault(base, {})
                if isinstance(current, dict):
                    current[sub] = value
        else:
            out[key] = value
    return out


def _json_error(status: int, body: Mapping[str, Any]) -> JSONResponse:
    return JSONResponse(dict(body), status_code=status)


def authenticate(emu: Emulator, request: Request, path: str) -> ApiKey | Response:
    header = request.headers.get("authorization")
    if not header:
        # Without an Authorization header upstream takes the web-UI path: no session,
        # so a bare 401 with no body.
        return Response(status_code=401)
    failed = _json_error(401, {"status": 401, "message": msg("http.auth_failed")})
    pieces = header.split(" ")
    if len(pieces) < 2:
        return failed
    try:
        decoded = base64.b64decode(pieces[1], validate=False).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return failed
    key, sep, secret = decoded.partition(":")
    api_key = emu.keys.get(key)
    if not sep or api_key is None or api_key.secret != secret.split(":")[0]:
        return failed
    if api_key.privileges is not None and not any(path.startswith(p) for p in api_key.privileges):
        return _json_error(403, {"status": 403, "message": msg("http.forbidden")})
    return api_key


async def read_body(request: Request) -> dict[str, Any] | Response:
    ctype = request.headers.get("content-type", "").replace(" ", "").lower()
    raw = await request.body()
    if ctype in ("application/json", "application/json;charset=utf-8"):
        if not raw.strip():
            return _json_error(400, {"status": 400, "message": msg("http.invalid_json")})
        try:
            data = json.loads(raw)
        except ValueError:
            return {}  # upstream ignores a body it cannot parse
        return data if isinstance(data, dict) else {}
    if ctype.startswith("application/x-www-form-urlencoded"):
        return php_params(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    return {}


async def dispatch(emu: Emulator, request: Request) -> Response:
    path = request.url.path
    found = resolve(emu, path)
    if found is None:
        return _json_error(404, {"errorMessage": msg("http.not_found")})
    route, args = found
    auth = authenticate(emu, request, path)
    if isinstance(auth, Response):
        return auth
    body = await read_body(request)
    if isinstance(body, Response):
        return body
    post = body if request.method == "POST" else {}
    params = {**php_params(list(request.query_params.multi_items())), **post}
    call = Call(request.method, path, params, post, "root", emu)
    try:
        answer = await route.handler(call, *args)
    except crud.UserError as exc:
        return _json_error(500, {"errorMessage": exc.message, "errorTitle": exc.title})
    except Exception:
        return _json_error(500, {"errorMessage": msg("http.unexpected")})
    if isinstance(answer, Response):
        return answer
    return JSONResponse(answer)


# -- item controllers ------------------------------------------------------------------


def _coll(call: Call, kind: str) -> Collection:
    coll: Collection = call.state.collections[kind]
    return coll


def nodes(call: Call, coll: Collection, item: Mapping[str, str]) -> dict[str, Any]:
    ctx = crud.context(call.state, coll, item)
    return {f.name: render(f, item.get(f.name, ""), ctx) for f in coll.fields}


def get_base(call: Call, kind: str, uuid: str | None) -> Answer:
    coll = _coll(call, kind)
    with call.state.lock:
        if uuid is None:
            item = crud.new_item(call.state, coll)
        else:
            found = dict(search.items_of(call.state, coll)).get(uuid)
            if found is None:
                return []
            item = found
        return {coll.wrapper: nodes(call, coll, item)}


def whole_model(call: Call, kind: str) -> Answer:
    """getAction(): the whole model on GET, [] otherwise (oxl-opnsense-client reads this)."""
    if call.method != "GET":
        return []
    coll = _coll(call, kind)
    with call.state.lock:
        # Rendering reads the box (aliases, interfaces), never the siblings: one context
        # for all items keeps a 2,000-rule model linear instead of quadratic.
        shared = crud.context(call.state, coll, {})
        items = {
            u: {
                f.name: render(f, i.get(f.name, ""), dataclasses.replace(shared, item=i))
                for f in coll.fields
            }
            for u, i in search.items_of(call.state, coll)
        }
    outer, inner = coll.path
    model: dict[str, Any] = {outer: {inner: items or []}}
    if kind == "alias":
        model = {"geoip": {"url": ""}, **model}
    elif kind == "rule":
        for section in ("snatrules", "npt", "onetoone"):
            model[section] = {"rule": []}
    else:
        with call.state.lock:
            model = {**settings.nodes(call.state, coll.model), **model}
        model["aliases"] = {"alias": []}
        model["domains"] = {"domain": []}
    return {coll.model: model}


def _write(call: Call, kind: str) -> bool:
    return call.is_post and _coll(call, kind).wrapper in call.post


async def _add(call: Call, kind: str) -> Answer:
    if not _write(call, kind):
        return {"result": "failed"}
    data = call.post[_coll(call, kind).wrapper]
    if not isinstance(data, dict):
        data = {}
    return crud.add_item(call.state, _coll(call, kind), data, who=call.who, where=call.path)


async def _set(call: Call, kind: str, uuid: str) -> Answer:
    if not _write(call, kind):
        return {"result": "failed"}
    data = call.post[_coll(call, kind).wrapper]
    if not isinstance(data, dict):
        data = {}
    return crud.set_item(call.state, _coll(call, kind), uuid, data, who=call.who, where=call.path)


async def _del(call: Call, kind: str, uuids: str) -> Answer:
    if not call.is_post:
        return {"result": "failed"}
    return crud.del_item(call.state, _coll(call, kind), uuids, who=call.who, where=call.path)


async def _toggle(call: Call, kind: str, uuids: str, enabled: str | None) -> Answer:
    if not call.is_post:
        return {"result": "failed"}
    coll = _coll(call, kind)
    return crud.toggle_item(call.state, coll, uuids, enabled, who=call.who, where=call.path)


# Aliases — Firewall/Api/AliasController.php


async def alias_search(call: Call) -> Answer:
    types = call.params.get("type")
    cats = call.params.get("category")

    def keep(item: Mapping[str, str]) -> bool:
        type_ok = not types or item.get("type") in (types if isinstance(types, list) else [])
        cat_ok = not cats or bool(
            set(item.get("categories", "").split(",")) & set(cats if isinstance(cats, list) else [])
        )
        return type_ok and cat_ok

    with call.state.lock:
        coll = _coll(call, "alias")
        result = search.search_base(call.state, coll, call.params, None, "name", keep)
        for row in result["rows"]:
            item = dict(search.items_of(call.state, coll)).get(row["uuid"], {})
            cats_of = item.get("categories", "")
            row["categories_uuid"] = cats_of.split(",") if cats_of else []
    return result


async def alias_get(call: Call, uuid: str | None = None) -> Answer:
    """getItemAction(): appends every alias to the content map. PHP creates the nested
    keys on the fly, so an unknown uuid answers {"alias": {"content": {...}}}, not []."""
    found = get_base(call, "alias", uuid)
    answer: dict[str, Any] = found if isinstance(found, dict) else {"alias": {}}
    content = answer["alias"].setdefault("content", {})
    with call.state.lock:
        for name, alias in crud.alias_map(call.state).items():
            entry = content.setdefault(name, {"selected": 0, "value": name})
            entry["description"] = alias.get("description", "")
    return answer


async def alias_add(call: Call) -> Answer:
    return await _add(call, "alias")


async def alias_set(call: Call, uuid: str) -> Answer:
    return await _set(call, "alias", uuid)


async def alias_del(call: Call, uuids: str) -> Answer:
    with call.state.lock:
        crud.check_alias_deletable(call.state, uuids)  # before the POST check, as upstream
    return await _del(call, "alias", uuids)


async def alias_toggle(call: Call, uuid: str, enabled: str | None = None) -> Answer:
    return await _toggle(call, "alias", uuid, enabled)


async def alias_uuid(call: Call, name: str) -> Answer:
    with call.state.lock:
        for uuid, item in search.items_of(call.state, _coll(call, "alias")):
            if item.get("name") == name:
                return {"uuid": uuid}
    return []


async def alias_reconfigure(call: Call) -> Answer:
    if not call.is_post:
        return {"status": "failed"}
    # "filter reload skip_alias" then "filter refresh_aliases": rules and aliases go live.
    call.state.mark_applied(["alias", "filter"])
    return {"status": "ok"}


async def alias_model(call: Call) -> Answer:
    return whole_model(call, "alias")


async def alias_import(call: Call) -> Answer:
    """importAction(): the aliases in POST "data", all or nothing."""
    if not call.is_post:
        raise bulk.unsupported()
    coll = _coll(call, "alias")
    try:
        return bulk.import_aliases(
            call.state, coll, call.post.get("data"), who=call.who, where=call.path
        )
    except crud.InputTypeError as exc:
        raise RuntimeError(str(exc)) from exc  # a PHP error: the plain 500


# Filter rules — Firewall/Api/FilterController.php, FilterBaseController.php


def _sort_order(item: Mapping[str, str]) -> str:
    # FilterRuleField computes this volatile key from the priority group and sequence; the
    # emulator has no floating/group rules, so the sequence alone orders them.
    seq = item.get("sequence", "0")
    return f"4{int(seq) if seq.isdigit() else 0:06d}"


async def rule_search(call: Call) -> Answer:
    state = call.state
    coll = _coll(call, "rule")
    style = state.version.rule_search
    cats = call.params.get("category")

    def cat_ok(item: Mapping[str, str]) -> bool:
        wanted = cats if isinstance(cats, list) else []
        return not wanted or bool(set(item.get("categories", "").split(",")) & set(wanted))

    with state.lock:
        if style in ("fields3", "fields4"):
            fields = ["enabled", "sequence", "description"]
            if style == "fields4":
                fields.insert(2, "action")
            return search.search_base(state, coll, call.params, fields, "sequence", cat_ok)
        iface_param = call.params.get("interface")
        interfaces = [i for i in str(iface_param or "").split(",") if i]
        rows = []
        for uuid, item in search.items_of(state, coll):
            rule_ifs = [i for i in item.get("interface", "").split(",") if i]
            inverted = item.get("interfacenot", "") not in ("", "0")
            if style == "floating":
                # 25.7/26.1: without an interface only floating rules (not exactly one
                # interface) are listed; with one, rules on exactly that set.
                if not interfaces:
                    if_ok = len(rule_ifs) != 1 or inverted
                elif inverted:
                    if_ok = False
                else:
                    if_ok = set(interfaces) == set(rule_ifs)
            else:
                if_ok = iface_param is None or not rule_ifs or bool(set(rule_ifs) & set(interfaces))
            if not (if_ok and cat_ok(item)):
                continue
            row = search.make_row(state, coll, uuid, item, [f.name for f in coll.fields])
            row["sort_order"] = _sort_order(item)
            row["prio_group"] = _sort_order(item)[:1]
            _alias_meta(state, coll, item, row)
            row["category_colors"] = []
            rows.append(row)
        return search.search_recordset(rows, call.params, "sort_order")


def _alias_meta(
    state: EmulatorState, coll: Collection, item: Mapping[str, str], row: dict[str, Any]
) -> None:
    """The icons hints of the rules grid: is_alias_* (25.7), alias_meta_* (26.1+)."""
    known = crud.alias_map(state)
    net_field = coll.field("source_net")
    labels = options_of(net_field, crud.context(state, coll, item)) if net_field else {}
    for name in ("source_net", "source_port", "destination_net", "destination_port"):
        if not item.get(name):
            continue
        values = [v.strip() for v in item[name].split(",")]
        if state.version.name == "25.7":
            row[f"is_alias_{name}"] = [v in known for v in values]
            continue
        row[f"alias_meta_{name}"] = [
            {
                "value": v,
                "%value": v if v in known else labels.get(v, v),
                "isAlias": v in known,
                "description": known[v].get("description", "") if v in known else "",
            }
            for v in values
        ]


async def rule_get(call: Call, uuid: str | None = None) -> Answer:
    return get_base(call, "rule", uuid)


async def rule_add(call: Call) -> Answer:
    return await _add(call, "rule")


async def rule_set(call: Call, uuid: str) -> Answer:
    return await _set(call, "rule", uuid)


async def rule_del(call: Call, uuid: str) -> Answer:
    return await _del(call, "rule", uuid)


async def rule_toggle(call: Call, uuid: str, enabled: str | None = None) -> Answer:
    return await _toggle(call, "rule", uuid, enabled)


async def rule_model(call: Call) -> Answer:
    return whole_model(call, "rule")


async def rule_upload(call: Call) -> Answer:
    """uploadRulesAction() (26.1+): rules as CSV in POST "payload"; see bulk.upload_rules."""
    if not call.is_post or "payload" not in call.post:
        return {"status": "failed"}
    payload = call.post["payload"]
    if not isinstance(payload, str):
        raise RuntimeError("payload is not a string")  # fwrite() of an array: a PHP error
    return bulk.upload_rules(
        call.state, _coll(call, "rule"), payload, who=call.who, where=call.path
    )


async def filter_apply(call: Call, revision: str | None = None) -> Answer:
    if not call.is_post:
        return {"status": "error"}
    emu = call.emulator
    if emu.state.version.rollback_api:
        if revision:
            emu.rollback.arm(revision)
        # "filter reload" also refreshes alias tables.
        emu.state.mark_applied(["filter", "alias"])
    else:
        emu.state.mark_applied(["filter"])  # 26.7: "filter reload skip_alias"
    return {"status": "OK\n\n"}


async def filter_savepoint(call: Call) -> Answer:
    if not call.is_post:
        return {"status": "error"}
    entry = call.state.save(f"{call.path} made changes", call.who)
    retention = str(call.state.backup_count)
    return {"status": "ok", "retention": retention, "revision": entry.time}


async def filter_cancel_rollback(call: Call, revision: str) -> Answer:
    if not call.is_post:
        return {"status": "error"}
    stopped = call.emulator.rollback.cancel(revision)
    # configd answers script output plus "\n\n"; a failing script reads "Execute error".
    return {"status": "\n\n" if stopped else msg("configd.execute_error") + "\n\n"}


async def filter_revert(call: Call, revision: str) -> Answer:
    if not call.is_post:
        return {"status": "error"}
    if not restore_filter(call.state, revision, f"{call.path} made changes", call.who):
        return {"status": msg("filter.unknown_savepoint")}
    return {"status": "ok"}


# Unbound host overrides — Unbound/Api/SettingsController.php, ServiceController.php


async def host_search(call: Call) -> Answer:
    state = call.state
    coll = _coll(call, "host")
    with state.lock:
        if state.version.name == "24.7":
            fields = [
                "enabled",
                "hostname",
                "domain",
                "rr",
                "mxprio",
                "mx",
                "server",
                "description",
            ]
            return search.search_base(state, coll, call.params, fields, "hostname")
        result = search.search_base(state, coll, call.params, None, None)
        if state.version.host_addptr:  # 26.7 lists host aliases as child rows
            for row in result["rows"]:
                row["isAlias"] = False
        return result


async def host_get(call: Call, uuid: str | None = None) -> Answer:
    return get_base(call, "host", uuid)


async def host_add(call: Call) -> Answer:
    return await _add(call, "host")


async def host_set(call: Call, uuid: str) -> Answer:
    return await _set(call, "host", uuid)


async def host_del(call: Call, uuid: str) -> Answer:
    return await _del(call, "host", uuid)


async def host_toggle(call: Call, uuid: str, enabled: str | None = None) -> Answer:
    return await _toggle(call, "host", uuid, enabled)


async def host_model(call: Call) -> Answer:
    return whole_model(call, "host")


async def unbound_set(call: Call) -> Answer:
    """setAction(): the settings sections of the whole model (general, advanced)."""
    if not call.is_post:
        return {"result": "failed"}
    return settings.set_model(call.state, "unbound", call.post.get("unbound"), call.who, call.path)


async def unbound_reconfigure(call: Call) -> Answer:
    if not call.is_post:
        return {"status": "failed"}
    call.state.mark_applied(["unbound"])
    return {"status": "ok"}


async def unbound_status(call: Call) -> Answer:
    return {"status": "running"}


# Services — Core/Api/ServiceController.php

# What configd's "service list" names on a stock box (the services this emulator's
# configuration runs), and whether the GUI may stop each.
SERVICES = (
    ("configd", "System Configuration Daemon", True),
    ("login", "Users and Groups", True),
    ("openssh", "Secure Shell Daemon", False),
    ("pf", "Packet Filter", True),
    ("routing", "System routing", True),
    ("syslog-ng", "Syslog-ng Daemon", False),
    ("unbound", "Unbound DNS", False),
    ("webgui", "Web GUI", True),
)


async def service_search(call: Call) -> Answer:
    """searchAction(): one row per service; locked and running are integers, not the
    model's "0"/"1" strings."""
    rows = [
        {"id": name, "locked": 1 if locked else 0, "running": 1, "description": text, "name": name}
        for name, text, locked in SERVICES
    ]
    return search.search_recordset(rows, call.params, None)


# Firmware — Core/Api/FirmwareController.php


def product(state: EmulatorState) -> dict[str, Any]:
    v = state.version
    return {
        "product_abi": v.name,
        "product_arch": "amd64",
        "product_check": None,
        "product_copyright_owner": "Deciso B.V.",
        "product_copyright_url": "https://www.deciso.com/",
        "product_copyright_years": "2014-2026",
        "product_email": "project@opnsense.org",
        "product_hash": "0000000000",
        "product_id": "opnsense",
        "product_latest": v.product_version,
        "product_mirror": "https://pkg.opnsense.org/FreeBSD:14:amd64/" + v.name,
        "product_name": "OPNsense",
        "product_nickname": "Emulated",
        "product_series": v.name,
        "product_tier": "1",
        "product_version": v.product_version,
        "product_website": "https://opnsense.org/",
    }


async def firmware_status(call: Call) -> Answer:
    return {
        "product": product(call.state),
        "status_msg": msg("firmware.no_check"),
        "status": "none",
    }


async def firmware_info(call: Call) -> Answer:
    p = product(call.state)
    return {
        "product_id": p["product_id"],
        "product_version": p["product_version"],
        "package": [],
        "plugin": [],
        "changelog": [],
    }


# Configuration history — Core/Api/BackupController.php


def _xml(call: Call, backup_id: str) -> str | None:
    backup = call.state.backup(backup_id)
    return configxml.render(call.state, backup) if backup is not None else None


async def backup_providers(call: Call) -> Answer:
    return {"items": {"this": {"description": "This Firewall", "dirname": "/conf/backup"}}}


async def backup_list(call: Call, host: str) -> Answer:
    if host != "this":
        return {"items": []}
    with call.state.lock:
        backups = list(call.state.backups)
        items = [
            {
                "time": b.time,
                "time_iso": datetime.fromtimestamp(int(float(b.time)), UTC).isoformat(),
                "description": b.description,
                "username": b.username,
                "filesize": len(configxml.render(call.state, b).encode()),
                "id": b.id,
            }
            for b in backups
        ]
    items.sort(key=lambda i: float(str(i["time"])), reverse=True)
    return {"items": items}


async def backup_diff(call: Call, host: str, first: str, second: str) -> Answer:
    if host != "this":
        return {"items": []}
    with call.state.lock:
        a, b = _xml(call, first), _xml(call, second)
    if a is None or b is None or first == second:
        return {"items": []}
    # BackupController runs "diff -u <second> <first>".
    lines = difflib.unified_diff(
        b.splitlines(),
        a.splitlines(),
        f"/conf/backup/{second}",
        f"/conf/backup/{first}",
        lineterm="",
    )
    return {"items": [html.escape(line, quote=True) for line in lines]}


async def backup_revert(call: Call, backup_id: str) -> Answer:
    if not call.is_post:
        return {"status": "failed"}
    with call.state.lock:
        backup = call.state.backup(backup_id)
        if backup is None:
            return {"status": "not_found"}
        call.state.restore(backup)
        call.state.save(f"{call.path} made changes", call.who)
    return {"status": "reverted"}


async def backup_delete(call: Call, backup_id: str) -> Answer:
    if not call.is_post:
        return {"status": "failed"}
    with call.state.lock:
        before = len(call.state.backups)
        call.state.backups = [b for b in call.state.backups if b.id != backup_id]
        return {"status": "deleted" if len(call.state.backups) < before else "not_found"}


async def backup_download(call: Call, host: str, backup_id: str | None = None) -> Answer:
    if host != "this":
        return Response(status_code=200)
    with call.state.lock:
        candidates = list(reversed(call.state.backups))
        chosen = next((b for b in candidates if backup_id in (None, "", b.id)), None)
        if chosen is None:
            return Response(status_code=200)
        body = configxml.render(call.state, chosen).encode()
        name = f"config-{call.state.hostname}.{call.state.domain}-{chosen.time}.xml"
    return Response(
        body,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f"attachment; filename={name}",
            "Pragma": "no-cache",
            "Expires": "0",
        },
    )


def build_routes(emu: Emulator) -> dict[tuple[str, str], dict[str, Route]]:
    def table(**entries: tuple[Handler, int]) -> dict[str, Route]:
        # import_: "import" is a Python keyword; the action is importAction.
        return {name.rstrip("_").lower(): Route(h, n) for name, (h, n) in entries.items()}

    filter_routes = table(
        searchRule=(rule_search, 0),
        getRule=(rule_get, 0),
        addRule=(rule_add, 0),
        setRule=(rule_set, 1),
        delRule=(rule_del, 1),
        toggleRule=(rule_toggle, 1),
        apply=(filter_apply, 0),
        get=(rule_model, 0),
    )
    if emu.state.version.rule_upload:
        filter_routes.update(table(uploadRules=(rule_upload, 0)))
    if emu.state.version.rollback_api:
        filter_routes.update(
            table(
                savepoint=(filter_savepoint, 0),
                cancelRollback=(filter_cancel_rollback, 1),
                revert=(filter_revert, 1),
            )
        )
    return {
        ("firewall", "Alias"): table(
            searchItem=(alias_search, 0),
            getItem=(alias_get, 0),
            addItem=(alias_add, 0),
            setItem=(alias_set, 1),
            delItem=(alias_del, 1),
            toggleItem=(alias_toggle, 1),
            reconfigure=(alias_reconfigure, 0),
            getAliasUUID=(alias_uuid, 1),
            get=(alias_model, 0),
            import_=(alias_import, 0),
        ),
        ("firewall", "Filter"): filter_routes,
        ("unbound", "Settings"): table(
            searchHostOverride=(host_search, 0),
            getHostOverride=(host_get, 0),
            addHostOverride=(host_add, 0),
            setHostOverride=(host_set, 1),
            delHostOverride=(host_del, 1),
            toggleHostOverride=(host_toggle, 1),
            get=(host_model, 0),
            set=(unbound_set, 0),
        ),
        ("unbound", "Service"): table(
            reconfigure=(unbound_reconfigure, 0), status=(unbound_status, 0)
        ),
        ("core", "Firmware"): table(status=(firmware_status, 0), info=(firmware_info, 0)),
        ("core", "Service"): table(search=(service_search, 0)),
        ("core", "Backup"): table(
            providers=(backup_providers, 0),
            backups=(backup_list, 1),
            diff=(backup_diff, 3),
            revertBackup=(backup_revert, 1),
            deleteBackup=(backup_delete, 1),
            download=(backup_download, 1),
        ),
    }
