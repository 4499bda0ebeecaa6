"""What the OPNsense benchmarks share: the emulator over TLS, one list of generated
aliases, filter rules and host overrides rendered for FazAI (YAML documents) and for
oxl-opnsense-client (module arguments), and request accounting from the emulator's log.

Imported by bench/opnsense_read.py and bench/opnsense_apply.py, which put bench/ on
sys.path; oxl's client set-up lives in bench/_oxl.py, which imports nothing of FazAI's so
that oxl's own process can use it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import sys
import uuid as uuidlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _oxl
import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from controller.plan.diff import Action  # noqa: E402
from controller.providers.opnsense import payload  # noqa: E402
from controller.providers.opnsense.identity import object_uuid  # noqa: E402
from controller.testing.opnsense import EmulatorServer, RequestRecord  # noqa: E402

# Re-exported for the benchmarks that use oxl in their own process.
oxl_version = _oxl.version
quiet = _oxl.quiet

RESULTS_DIR = REPO / "bench" / "results"
NODE = "bench-fw"
SECRET_ENV = _oxl.SECRET_ENV  # where the Node documents (and the oxl runner) find it
DOMAIN = "bench.example.net"

# The endpoints that make saved changes live: what a reload costs is counted apart.
RELOAD_PATH = re.compile(
    r"^/api/(firewall/alias/reconfigure|firewall/filter/apply|unbound/service/reconfigure)"
)

# --------------------------------------------------------------------------
# the objects: one list, rendered for the emulator, for FazAI and for oxl


@dataclass
class Obj:
    kind: str  # FirewallAlias | FirewallRule | HostOverride
    name: str  # metadata.name of FazAI's document
    spec: dict[str, Any]  # the document's spec (target left out)
    managed: bool  # FazAI's: a document describes it
    drift: str | None = None  # None (in sync), "changed" or "missing" (managed only)
    uuid: str = ""  # where it sits on the firewall ("" for aliases: found by name)

    @property
    def emu_kind(self) -> str:
        return {"FirewallAlias": "alias", "FirewallRule": "rule", "HostOverride": "host"}[self.kind]


@dataclass
class Objects:
    aliases: list[Obj] = field(default_factory=list)
    rules: list[Obj] = field(default_factory=list)
    hosts: list[Obj] = field(default_factory=list)

    def all(self) -> list[Obj]:
        return self.aliases + self.rules + self.hosts

    def managed(self) -> list[Obj]:
        return [o for o in self.all() if o.managed]

    def expected_changes(self) -> dict[tuple[str, str], Action]:
        return {
            (o.kind, o.name): Action.UPDATE if o.drift == "changed" else Action.CREATE
            for o in self.managed()
            if o.drift
        }


ALIAS_TYPES = ("host", "network", "port")


def alias_spec(i: int) -> dict[str, Any]:
    kind = ALIAS_TYPES[i % 3]
    if kind == "host":
        content = [f"10.{1 + i // 250}.{i % 250}.1", f"10.{1 + i // 250}.{i % 250}.2"]
    elif kind == "network":
        content = [f"10.{100 + i // 250}.{i % 250}.0/24"]
    else:
        content = [str(1000 + i), str(20000 + i)]
    return {
        "name": f"bench_a{i:03d}",
        "type": kind,
        "content": content,
        "description": f"bench alias {i}",
        "enabled": True,
    }


def rule_spec(i: int, nets: list[str], ports: list[str]) -> dict[str, Any]:
    """Rule ``i``: on lan, wan or both, a third with a network alias (``nets``) as source,
    half with one as destination and a port alias (``ports``), TCP/UDP/any. No rule can
    match the controller's own path to the API (every destination is in 10.0.0.0/8), so
    FazAI's anti-lockout check lets them through."""
    interfaces: list[str | list[str]] = ["lan", "lan", "wan", ["lan", "wan"], "lan"]
    interface = interfaces[i % 5]
    protocol = "any" if i % 10 == 9 else ("UDP" if i % 4 == 1 else "TCP")
    source: dict[str, Any] = {
        "net": [nets[(i * 7) % len(nets)], "lan", f"192.168.{i % 250}.0/24"][i % 3]
        if nets
        else "any"
    }
    if i % 11 == 5:
        source["not"] = True
    destination: dict[str, Any] = {
        "net": nets[(i * 13 + 1) % len(nets)]
        if nets and i % 2 == 0
        else f"10.200.{i % 250}.{1 + i // 250}"
    }
    if protocol != "any":
        destination["port"] = (
            ports[(i * 3) % len(ports)] if ports and i % 2 == 0 else str(1 + i % 1000)
        )
    return {
        "action": "block" if i % 7 == 0 else "pass",
        "quick": True,
        "interface": interface,
        "direction": "in",
        "ipprotocol": "inet",
        "protocol": protocol,
        "source": source,
        "destination": destination,
        "log": i % 4 == 0,
        "sequence": 100 + i,
        "description": f"bench rule {i:04d}",
        "enabled": True,
    }


def host_spec(i: int) -> dict[str, Any]:
    return {
        "hostname": f"h{i:03d}",
        "domain": DOMAIN,
        "rr": "A",
        "server": f"10.50.{i // 250}.{i % 250 + 1}",
        "description": f"bench host {i}",
        "enabled": True,
    }


def build_objects(
    n_aliases: int, n_rules: int, n_hosts: int, *, managed_share: float = 0.5, drift: bool = True
) -> Objects:
    """``n_*`` objects of each kind; the first ``managed_share`` of each kind are FazAI's.
    With ``drift``, some of FazAI's objects are marked changed or missing (on the
    firewall), always the same ones for the same sizes."""
    objs = Objects()
    half_a = int(n_aliases * managed_share)
    half_r = int(n_rules * managed_share)
    half_h = int(n_hosts * managed_share)
    for i in range(n_aliases):
        managed = i < half_a
        state = None
        if drift and managed and i % 50 == 3:
            state = "missing"
        elif drift and managed and i % 25 == 1:
            state = "changed"
        objs.aliases.append(Obj("FirewallAlias", f"a{i:03d}", alias_spec(i), managed, state))

    # Rules refer only to aliases that are on the firewall (the emulator validates
    # references like the real one does).
    live = [o.spec for o in objs.aliases if o.drift != "missing"]
    nets = [a["name"] for a in live if a["type"] != "port"]
    ports = [a["name"] for a in live if a["type"] == "port"]
    for i in range(n_rules):
        managed = i < half_r
        state = None
        if drift and managed and i % 100 == 11:
            state = "missing"
        elif drift and managed and i % 50 == 7:
            state = "changed"
        name = f"rule-{i:04d}"
        rid = object_uuid(NODE, "FirewallRule", name) if managed else str(uuidlib.uuid4())
        objs.rules.append(Obj("FirewallRule", name, rule_spec(i, nets, ports), managed, state, rid))

    for i in range(n_hosts):
        managed = i < half_h
        state = None
        if drift and managed and i % 20 == 9:
            state = "missing"
        elif drift and managed and i % 20 == 5:
            state = "changed"
        name = f"host-{i:03d}"
        hid = object_uuid(NODE, "HostOverride", name) if managed else str(uuidlib.uuid4())
        objs.hosts.append(Obj("HostOverride", name, host_spec(i), managed, state, hid))
    return objs


def body(o: Obj) -> dict[str, Any]:
    """The object's write body, as an apply sends it (inner dict)."""
    if o.kind == "FirewallAlias":
        return payload.alias(o.spec)["alias"]
    if o.kind == "FirewallRule":
        return payload.rule(o.spec)["rule"]
    return payload.host_override(o.spec)["host"]


# --------------------------------------------------------------------------
# the emulator


@contextlib.contextmanager
def emulator(version: str) -> Iterator[EmulatorServer]:
    """A fresh emulated firewall over HTTPS on loopback; its API secret is in
    ``$SECRET_ENV`` (where FazAI's Node documents point) while it runs."""
    with EmulatorServer(version=version, tls=True) as emu:
        os.environ[SECRET_ENV] = emu.api_secret
        try:
            yield emu
        finally:
            os.environ.pop(SECRET_ENV, None)


def server_seconds(records: Iterable[RequestRecord]) -> float:
    """Time the emulator spent answering ``records`` (inside its handlers)."""
    return round(sum(r.duration for r in records), 3)


def request_summary(records: list[RequestRecord]) -> dict[str, Any]:
    """Counts and emulator time by ``METHOD path`` (uuids and revisions folded), reloads,
    errors."""
    by_path: dict[str, int] = {}
    busy: dict[str, float] = {}
    for r in records:
        key = f"{r.method} {_fold(r.path)}"
        by_path[key] = by_path.get(key, 0) + 1
        busy[key] = busy.get(key, 0.0) + r.duration
    order = sorted(by_path, key=lambda k: (-by_path[k], k))
    return {
        "requests": len(records),
        "reloads": sum(1 for r in records if RELOAD_PATH.match(r.path)),
        "errors": sum(1 for r in records if r.status >= 400 or r.status == 0),
        "emulator_seconds": server_seconds(records),
        "by_path": {k: by_path[k] for k in order},
        "by_path_seconds": {k: round(busy[k], 3) for k in order},
    }


_ARG = re.compile(r"/([0-9a-f]{8}-[0-9a-f-]{27}|[0-9]+\.[0-9]+|config-[^/]+\.xml|this)$")


def _fold(path: str) -> str:
    return _ARG.sub("/{arg}", path)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


# --------------------------------------------------------------------------
# FazAI


def write_fazai(emu: EmulatorServer, objs: Objects, folder: Path) -> Path:
    """FazAI's desired state for ``objs``' managed objects: a Node document pointing at
    ``emu`` (key in a file, secret in ``$SECRET_ENV``, the emulator's CA) and one YAML
    file per kind. Returns the folder to give ``fazai plan``/``apply``."""
    folder.mkdir(parents=True, exist_ok=True)
    key_file = folder / "fw.key"
    key_file.write_text(emu.api_key + "\n")
    key_file.chmod(0o600)
    state_dir = folder / "state"
    state_dir.mkdir(exist_ok=True)
    node = {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": "Node",
        "metadata": {"name": NODE},
        "spec": {
            "platform": "opnsense",
            "url": emu.url,
            "apiKeyRef": {"file": str(key_file)},
            "apiSecretRef": {"env": SECRET_ENV},
            "tls": {"caBundle": str(emu.certificate)},
        },
    }
    (state_dir / "node.yaml").write_text(yaml.safe_dump(node, sort_keys=False))
    # The shipped default holds a block rule for approval when the Node does not say which
    # interfaces the controller comes in on. Saying so (controllerInterfaces) would also
    # narrow the provider's anti-lockout check, so the bench lifts the default for its own
    # rules instead, as a user would, and the lockout check still covers every interface.
    policy = {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": "Policy",
        "metadata": {"name": "bench-rules"},
        "spec": {
            "match": {"kinds": ["FirewallRule"], "actions": ["create", "update"]},
            "rules": [
                {
                    "name": "bench-block-rules",
                    "effect": "allow",
                    "message": "the benchmark's rules",
                    "reason": "every destination is in 10.0.0.0/8, away from the controller's "
                    "loopback path; the anti-lockout check still runs at apply",
                    "expression": 'item.name.startsWith("rule-")',
                    "overrides": ["fazai-firewall-rules/block-on-controller-interface"],
                }
            ],
        },
    }
    (state_dir / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    for fname, group in (
        ("aliases.yaml", objs.aliases),
        ("rules.yaml", objs.rules),
        ("hosts.yaml", objs.hosts),
    ):
        docs = [
            {
                "apiVersion": "fazai.dev/v1alpha1",
                "kind": o.kind,
                "metadata": {"name": o.name},
                "spec": {"target": {"node": NODE}, **o.spec},
            }
            for o in group
            if o.managed
        ]
        if docs:
            (state_dir / fname).write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return state_dir


# --------------------------------------------------------------------------
# oxl-opnsense-client


def oxl_params(o: Obj) -> tuple[str, dict[str, Any]]:
    """The module and its arguments for one object, as an Ansible task would give them."""
    s = o.spec
    if o.kind == "FirewallAlias":
        return "alias", {
            "name": s["name"],
            "type": s["type"],
            "content": [str(c) for c in s["content"]],
            "description": s["description"],
            "enabled": s["enabled"],
        }
    if o.kind == "FirewallRule":
        src, dst = s["source"], s["destination"]
        iface = s["interface"] if isinstance(s["interface"], list) else [s["interface"]]
        return "rule", {
            "match_fields": ["description"],
            "description": s["description"],
            "sequence": s["sequence"],
            "action": s["action"],
            "quick": s["quick"],
            "interface": iface,
            "direction": s["direction"],
            "ip_protocol": s["ipprotocol"],
            "protocol": s["protocol"],
            "source_net": src.get("net", "any"),
            "source_port": str(src.get("port", "")),
            "source_invert": src.get("not", False),
            "destination_net": dst.get("net", "any"),
            "destination_port": str(dst.get("port", "")),
            "destination_invert": dst.get("not", False),
            "log": s["log"],
            "enabled": s["enabled"],
        }
    return "unbound_host", {
        "hostname": s["hostname"],
        "domain": s["domain"],
        "record_type": s["rr"],
        "value": s["server"],
        "description": s["description"],
        "enabled": s["enabled"],
        "match_fields": ["hostname", "domain"],
    }


def oxl_client_for(emu: EmulatorServer, timeout: float) -> Any:
    """An oxl ``Client`` for ``emu``, in this process (see ``_oxl.client``)."""
    assert emu.certificate is not None, "the emulator serves HTTPS"
    return _oxl.client(emu.port, emu.api_key, emu.api_secret, emu.certificate, timeout)
