"""A fleet of real Linux nodes for tests, demos and benchmarks.

Every node is a real host as far as an SSH client can tell:

* its own network namespace, joined by a veth pair to one Linux bridge per
  fleet; the bridge holds the gateway address, so the host reaches every node
  on-link and nodes reach each other through the bridge;
* its own mount, UTS, IPC and PID namespaces, with a copy-on-write root: an
  overlay whose lower layer is the host's ``/`` and whose upper layer lives on
  a tmpfs private to the node, plus fresh ``/proc``, ``/tmp``, ``/run`` and
  ``/dev/shm``;
* a real OpenSSH server with a fresh ed25519 host key, root login by key only.

Nothing a node writes reaches the host's disk: when the node's processes die
its mount namespace, and with it the tmpfs, disappear.

All kernel objects of a fleet carry a prefix derived from the pid and a
per-process counter (``fz<pid hex>x<counter hex>``), so several fleets can run
at once (on different subnets) and leftovers of dead processes can be found and
removed.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import ipaddress
import itertools
import json
import logging
import os
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from controller.errors import SandboxError

__all__ = ["Fleet", "FleetError", "FleetNode", "NodeSpec", "fleet_available"]

log = logging.getLogger(__name__)

# DNS-1123 label: the node name doubles as its hostname.
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_TMPFS_SIZE = re.compile(r"^[0-9]+[kKmMgG%]?$")
# Names of kernel objects we own, also those left over by dead processes.
_OWNED_LINK = re.compile(r"^fz([0-9a-f]+)x[0-9a-f]+(br|v[0-9a-f]+)$")
_OWNED_NETNS = re.compile(r"^fz([0-9a-f]+)x[0-9a-f]+-")
_MAX_IFNAME = 15  # IFNAMSIZ - 1

_SSHD = "/usr/sbin/sshd"
_SSHD_COMMS = frozenset({"sshd", "sshd-session"})
_CMD_TIMEOUT = 30.0  # for host-side helper commands (ip, ssh-keygen)
_BOOT_TIMEOUT = 30.0  # per node: namespaces, filesystem and sshd up
_STOP_TIMEOUT = 10.0

# The environment commands get inside a node: what an SSH session would get,
# not whatever the test runner happens to have (PYTHONPATH, VIRTUAL_ENV, ...).
_NODE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "USER": "root",
    "LOGNAME": "root",
    "SHELL": "/bin/sh",
    "LANG": "C.UTF-8",
}

# Runs as PID 1 of the node's PID namespace, already inside its network
# namespace and a private mount + UTS + IPC namespace.  Arguments:
# $1 mount point for the node's tmpfs, $2 seed directory (files to install),
# $3 tmpfs size, $4 hostname.  It prints "ready <host pid>" once chrooted into
# the assembled root, then stays as a zombie reaper: dash's `wait` reaps any
# child, so daemons orphaned by SSH sessions do not pile up.
_INIT_SCRIPT = r"""
set -eu
T=$1 S=$2 SIZE=$3 NAME=$4 M=$1/merged
mount -t tmpfs -o "size=$SIZE,mode=0755" fleet-node "$T"
mkdir "$T/upper" "$T/work" "$M"
mount -t overlay overlay -o "lowerdir=/,upperdir=$T/upper,workdir=$T/work" "$M"
mount -t proc proc "$M/proc"
# Global sysctls (kernel.*, vm.*) would change the host: read-only.  net.* is
# per network namespace, so the node may change its own.
# (A bind mount inherits read-only from its source, hence this order.)
mount --bind "$M/proc/sys/net" "$M/proc/sys/net"
mount --rbind "$M/proc/sys" "$M/proc/sys"
mount -o remount,bind,ro "$M/proc/sys"
mount -t sysfs -o ro sysfs "$M/sys"
mount --rbind /dev "$M/dev"
mount -t tmpfs -o mode=1777 shm "$M/dev/shm"
mount -t tmpfs -o mode=1777 tmp "$M/tmp"
mount -t tmpfs -o mode=0755 run "$M/run"
mkdir -m 0755 "$M/run/sshd"
# The node must not present (or even see) the host's identity.
rm -f "$M"/etc/ssh/ssh_host_*
rm -rf "$M/root/.ssh"
install -m 0600 "$S/ssh_host_ed25519_key" "$M/etc/ssh/ssh_host_ed25519_key"
install -m 0644 "$S/ssh_host_ed25519_key.pub" "$M/etc/ssh/ssh_host_ed25519_key.pub"
install -m 0644 "$S/sshd_config" "$M/etc/ssh/sshd_config"
install -d -m 0700 "$M/root/.ssh"
install -m 0600 "$S/authorized_keys" "$M/root/.ssh/authorized_keys"
install -m 0644 "$S/hostname" "$M/etc/hostname"
install -m 0644 "$S/hosts" "$M/etc/hosts"
install -m 0444 "$S/machine-id" "$M/etc/machine-id"
install -m 0644 "$S/resolv.conf" "$M/etc/resolv.conf"
hostname "$NAME"
# /proc is still the host's instance here, so this is our pid on the host.
read -r pid _ < /proc/self/stat
# Say "ready" only once chrooted: the host then nsenters with --root, which
# takes this process's root as it is at that moment.
exec chroot "$M" /bin/sh -c '
    echo "ready $1"
    exec </dev/null >/dev/null 2>&1
    while :; do sleep 3600 & wait $!; done' fleet-init "$pid"
"""

_SSHD_CONFIG = """\
# sshd_config of fleet node {name}, written by controller.testing.fleet.
Port 22
ListenAddress {address}
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 200
MaxSessions 50
UseDNS no
PrintMotd no
PrintLastLog no
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
LogLevel INFO
"""

_fleet_counter = itertools.count(1)
_fleet_counter_lock = threading.Lock()


@dataclass(frozen=True)
class NodeSpec:
    """What a node should be: its name (DNS-1123, also its hostname) and IPv4 address."""

    name: str
    address: str


class SubnetInUseError(SandboxError, RuntimeError):
    """The fleet's subnet is taken: another fleet holds its lock, or the host has an
    address in it. A RuntimeError as every fleet failure is, and a SandboxError so the
    CLI says what to do instead of calling it a bug."""


class FleetError(RuntimeError):
    """Starting a fleet failed; says which node and which step, with the command's stderr."""

    def __init__(self, node: str, step: str, detail: str) -> None:
        super().__init__(f"fleet node {node!r}: step {step!r} failed: {detail.strip()}")
        self.node = node
        self.step = step
        self.detail = detail


# --------------------------------------------------------------------------
# process helpers


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _run(
    argv: Sequence[str],
    *,
    timeout: float = _CMD_TIMEOUT,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """subprocess.run with a timeout that kills the whole process group.

    nsenter forks to enter a PID namespace; killing only its pid on timeout
    would leave the command running inside the node.  A new session makes the
    command and everything it forks one group we can kill at once.
    """
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        # Something that escaped the group may still hold the pipes open.
        try:
            out, err = proc.communicate(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = b"", b""
        raise subprocess.TimeoutExpired(list(argv), timeout, out, err) from None
    result = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
    if check:
        result.check_returncode()
    return result


def _ip(*args: str, batch: Sequence[str] | None = None, netns: str | None = None) -> str:
    """Run `ip`, optionally inside a named netns and/or with a batch of commands on stdin."""
    argv = ["ip"]
    if netns is not None:
        argv += ["-n", netns]
    argv += list(args)
    data = None
    if batch is not None:
        argv += ["-batch", "-"]
        data = "".join(line + "\n" for line in batch).encode()
    return _run(argv, input=data).stdout.decode()


def _describe(exc: BaseException) -> str:
    """The useful part of a failed command: its argv, exit status and stderr."""
    if isinstance(exc, subprocess.CalledProcessError):
        stderr = (exc.stderr or b"").decode(errors="replace").strip()
        return f"`{' '.join(map(str, exc.cmd))}` exited {exc.returncode}: {stderr}"
    if isinstance(exc, subprocess.TimeoutExpired):
        stderr = (exc.stderr or b"").decode(errors="replace").strip()
        return f"`{' '.join(map(str, exc.cmd))}` timed out after {exc.timeout}s: {stderr}"
    return f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def _step(node: str, step: str) -> Iterator[None]:
    """Turn any failure inside the block into a FleetError naming node and step."""
    try:
        yield
    except FleetError:
        raise
    except Exception as exc:
        raise FleetError(node, step, _describe(exc)) from exc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed but unreaped owner (a zombie) still answers signal 0: it is dead all the same.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def _wait_proc(proc: subprocess.Popen[bytes] | None, timeout: float = _STOP_TIMEOUT) -> None:
    if proc is None:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)


# --------------------------------------------------------------------------
# availability


@functools.cache
def fleet_available() -> str | None:
    """None when this process can start a fleet, else a human-readable reason.

    Checks root, the tools, and actually tries the namespaces and an overlay
    with lowerdir=/ (containers often forbid one of them); cached per process.
    """
    if os.geteuid() != 0:
        return "fleet needs root (network namespaces, mounts)"
    for tool in ("ip", "unshare", "nsenter", "chroot", "ssh-keygen", "install"):
        if shutil.which(tool) is None:
            return f"fleet needs `{tool}` on PATH"
    if not os.access(_SSHD, os.X_OK):
        return f"fleet needs an OpenSSH server at {_SSHD} (apt-get install openssh-server)"
    with tempfile.TemporaryDirectory(prefix="fleet-probe-") as tmp:
        probe = (
            'mount -t tmpfs probe "$1" && mkdir "$1/u" "$1/w" "$1/m" && '
            'mount -t overlay overlay -o "lowerdir=/,upperdir=$1/u,workdir=$1/w" "$1/m" && '
            'test -x "$1/m/usr/sbin/sshd"'
        )
        argv = [
            "unshare", "--mount", "--uts", "--ipc", "--net", "--pid", "--fork",
            "--propagation", "private", "/bin/sh", "-c", probe, "probe", tmp,
        ]  # fmt: skip
        try:
            _run(argv, timeout=10)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            return f"cannot create namespaces or an overlay of / here: {_describe(exc)}"
    try:
        _run(["ip", "link", "show"], timeout=10)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        return f"`ip` does not work here: {_describe(exc)}"
    return None


# --------------------------------------------------------------------------
# nodes


class FleetNode:
    """One running node of a Fleet."""

    def __init__(self, spec: NodeSpec, *, netns: str, host_veth: str, state_dir: Path) -> None:
        self.name = spec.name
        self.address = spec.address
        self.port = 22
        self.host_public_key = ""  # "ssh-ed25519 AAAA...", set while booting
        self.netns = netns
        self.host_veth = host_veth
        self.state_dir = state_dir
        self._init: subprocess.Popen[bytes] | None = None  # unshare, parent of the node's PID 1
        self._init_pid: int | None = None  # host pid of the node's PID 1
        self._sshd: subprocess.Popen[bytes] | None = None  # nsenter, parent of sshd
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FleetNode(name={self.name!r}, address={self.address!r}, port={self.port})"

    @property
    def sshd_log(self) -> Path:
        """sshd's own log (-e), handy when an SSH test fails."""
        return self.state_dir / "sshd.log"

    @property
    def sshd_running(self) -> bool:
        return self._sshd is not None and self._sshd.poll() is None

    def run(
        self,
        command: str,
        *,
        check: bool = True,
        input: bytes | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a shell command inside the node, as root, from the host, without SSH.

        The command runs in all of the node's namespaces and its root, with cwd
        ``/`` and a login-like environment; stdout and stderr are captured.  A
        background process that keeps stdout open makes this wait for it, as
        with ssh: redirect its output.
        """
        return _run(self._nsenter("/bin/sh", "-c", command), input=input, timeout=timeout,
                    env=_NODE_ENV, check=check)  # fmt: skip

    def stop(self) -> None:
        """Kill this node's sshd and its sessions: the node becomes unreachable.

        Its filesystem and namespaces stay, so run() still works and start()
        brings sshd back.
        """
        with self._lock:
            if self._init_pid is not None:
                for pid in self._pids():
                    if _comm(pid) in _SSHD_COMMS:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
            _wait_proc(self._sshd)
            self._sshd = None

    def start(self) -> None:
        """(Re)start sshd after stop(); returns once it accepts connections."""
        with self._lock:
            if self._init_pid is None or not _pid_alive(self._init_pid):
                raise RuntimeError(f"node {self.name} is not running")
            if not self.sshd_running:
                with _step(self.name, "sshd"):
                    self._start_sshd()
                    self._wait_sshd(time.monotonic() + _BOOT_TIMEOUT)

    # -- internals used by Fleet -------------------------------------------

    def _nsenter(self, *argv: str) -> list[str]:
        if self._init_pid is None:
            raise RuntimeError(f"node {self.name} is not running")
        # --root/--wd without a value take the target's root (the overlay,
        # after its chroot) and cwd.  --pid makes nsenter fork.
        return [
            "nsenter", f"--target={self._init_pid}", "--mount", "--uts", "--ipc", "--net",
            "--pid", "--root", "--wd", "--", *argv,
        ]  # fmt: skip

    def _pids(self) -> list[int]:
        """Host pids of every process in this node's PID namespace."""
        assert self._init_pid is not None
        try:
            target = os.readlink(f"/proc/{self._init_pid}/ns/pid")
        except OSError:
            return []
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/ns/pid") == target:
                        pids.append(int(entry))
        return pids

    def _boot_filesystem(self, tmpfs_size: str, deadline: float) -> None:
        """Start the node's PID 1 (namespaces, CoW root) and wait until it is ready."""
        root = self.state_dir / "root"
        root.mkdir()
        argv = [
            "nsenter", f"--net=/run/netns/{self.netns}", "--",
            "unshare", "--mount", "--uts", "--ipc", "--pid", "--fork", "--kill-child",
            "--propagation", "private", "--",
            "/bin/sh", "-c", _INIT_SCRIPT, "fleet-init",
            str(root), str(self.state_dir / "seed"), tmpfs_size, self.name,
        ]  # fmt: skip
        log_path = self.state_dir / "init.log"
        with log_path.open("wb") as log_file:
            self._init = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file,
                env=_NODE_ENV, start_new_session=True,
            )  # fmt: skip
        assert self._init.stdout is not None
        with self._init.stdout as out:
            line = _read_line(out, deadline)
        if not line.startswith(b"ready "):
            _wait_proc(self._init, timeout=1)
            raise RuntimeError(
                f"node init did not report ready (exit status {self._init.returncode}): "
                f"{_tail(log_path)}"
            )
        self._init_pid = int(line.split()[1])

    def _start_sshd(self) -> None:
        with self.sshd_log.open("ab") as log_file:
            self._sshd = subprocess.Popen(
                self._nsenter(_SSHD, "-D", "-e", "-f", "/etc/ssh/sshd_config"),
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                env=_NODE_ENV, start_new_session=True,
            )  # fmt: skip

    def _wait_sshd(self, deadline: float) -> None:
        """Wait until sshd accepts a TCP connection and sends its SSH banner."""
        assert self._sshd is not None
        while True:
            if self._sshd.poll() is not None:
                raise RuntimeError(f"sshd exited {self._sshd.returncode}: {_tail(self.sshd_log)}")
            if _ssh_banner(self.address, self.port):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd not accepting connections: {_tail(self.sshd_log)}")
            time.sleep(0.01)

    def _destroy(self) -> None:
        """Kill every process of the node; its mounts and tmpfs go with them."""
        with self._lock:
            if self._init_pid is not None:
                # SIGKILL to a PID namespace's init kills the whole namespace.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._init_pid, signal.SIGKILL)
            if self._init is not None and self._init.poll() is None:
                self._init.kill()
            _wait_proc(self._init)
            _wait_proc(self._sshd)
            self._init = self._sshd = None
            self._init_pid = None


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _read_line(stream: IO[bytes], deadline: float) -> bytes:
    """Read one line from a pipe, giving up at deadline (returns what it has)."""
    fd = stream.fileno()
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            break
        chunk = os.read(fd, 256)
        if not chunk:
            break
        data += chunk
    return data


def _ssh_banner(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1) as sock:
            sock.settimeout(2)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


# --------------------------------------------------------------------------
# the fleet


class Fleet:
    """A set of real nodes reachable over SSH; start() brings them up, stop() removes all."""

    def __init__(
        self,
        nodes: Sequence[NodeSpec],
        *,
        workdir: Path,
        subnet: str = "10.231.0.0/24",
        tmpfs_size: str = "2g",
        subnet_wait: float = 0.0,
    ) -> None:
        """subnet_wait: how long start() waits for another fleet on the same subnet
        (in this or another process) to stop before giving up."""
        self.subnet = ipaddress.IPv4Network(subnet)
        self.gateway = str(next(self.subnet.hosts()))
        self.workdir = Path(workdir)
        self.tmpfs_size = tmpfs_size
        self.subnet_wait = subnet_wait
        self.private_key_file = self.workdir / "id_ed25519"
        self.public_key_file = self.workdir / "id_ed25519.pub"
        self.known_hosts_file = self.workdir / "known_hosts"
        with _fleet_counter_lock:
            self.prefix = f"fz{os.getpid():x}x{next(_fleet_counter):x}"
        self.bridge = f"{self.prefix}br"
        self._specs = list(nodes)
        self._validate()
        self.nodes: dict[str, FleetNode] = {
            spec.name: FleetNode(
                spec,
                netns=f"{self.prefix}-{spec.name}",
                host_veth=f"{self.prefix}v{index:x}",
                state_dir=self.workdir / "nodes" / spec.name,
            )
            for index, spec in enumerate(self._specs)
        }
        self._started = False
        self._subnet_lock: int | None = None  # fd holding the subnet's flock
        self._stop_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"Fleet(prefix={self.prefix!r}, subnet={str(self.subnet)!r}, nodes={list(self.nodes)})"
        )

    def _validate(self) -> None:
        if not _TMPFS_SIZE.match(self.tmpfs_size):
            raise ValueError(f"bad tmpfs size {self.tmpfs_size!r}")
        if len(f"{self.prefix}v{max(len(self._specs) - 1, 0):x}") > _MAX_IFNAME:
            raise ValueError(f"too many nodes for interface names ({len(self._specs)})")
        names: set[str] = set()
        addresses = {self.gateway}
        for spec in self._specs:
            if not _DNS1123_LABEL.match(spec.name):
                raise ValueError(f"node name {spec.name!r} is not a DNS-1123 label")
            address = ipaddress.IPv4Address(spec.address)
            if address not in self.subnet or address in (
                self.subnet.network_address, self.subnet.broadcast_address,
            ):  # fmt: skip
                raise ValueError(f"node {spec.name}: {address} is not a host of {self.subnet}")
            if spec.name in names or spec.address in addresses:
                raise ValueError(f"node {spec.name}: duplicate name or address {spec.address}")
            names.add(spec.name)
            addresses.add(spec.address)

    # -- lifecycle -----------------------------------------------------------

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Fleet:
        """Bring every node up, concurrently; returns once each sshd accepts connections.

        On failure everything started so far is removed and a FleetError
        (a RuntimeError) names the node and the step.
        """
        if self._started:
            raise RuntimeError("fleet already started")
        reason = fleet_available()
        if reason is not None:
            raise RuntimeError(f"cannot start a fleet: {reason}")
        self._started = True
        atexit.register(self.stop)
        began = time.monotonic()
        try:
            self._lock_subnet()
            _remove_stale_objects()
            self._check_subnet_free()
            self._prepare_workdir()
            with _step("-", "bridge"):
                self._create_bridge()
            for node in self.nodes.values():
                # One `ip` process at a time here: concurrent `ip netns add`
                # race on setting up /run/netns the first time.
                with _step(node.name, "network"):
                    self._create_host_side(node)
            self._boot_nodes()
            self.write_known_hosts(self.known_hosts_file)
        except BaseException:
            self.stop()
            raise
        log.info("fleet %s: %d nodes up in %.2fs", self.prefix, len(self.nodes),
                 time.monotonic() - began)  # fmt: skip
        return self

    def stop(self) -> None:
        """Tear everything down; idempotent and never raises."""
        with self._stop_lock:
            if not self._started:
                return
            for node in self.nodes.values():
                try:
                    node._destroy()
                except Exception:
                    log.warning("fleet %s: killing node %s failed", self.prefix, node.name,
                                exc_info=True)  # fmt: skip
            _remove_objects(lambda name: name.startswith(f"{self.prefix}-"),
                            lambda name: name.startswith(self.prefix))  # fmt: skip
            if self._subnet_lock is not None:
                os.close(self._subnet_lock)  # releases the flock
                self._subnet_lock = None
            atexit.unregister(self.stop)
            self._started = False

    # -- start steps ---------------------------------------------------------

    def _lock_subnet(self) -> None:
        """Take a host-wide lock on the subnet for the fleet's lifetime.

        Concurrent test sessions on one machine would otherwise collide on the
        same addresses; the kernel drops the lock when its process dies.
        """
        net = self.subnet
        path = Path("/run/lock") / f"fazai-fleet-{net.network_address}-{net.prefixlen}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.subnet_wait
        warned = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise SubnetInUseError(
                        f"subnet {net} is in use by another fleet (lock {path} is held): "
                        f"stop the other `fazai demo`, `fazai serve --sandbox` or fleet test "
                        f"using it, or give the Linux Node documents addresses in another /24"
                    ) from None
                if not warned:
                    log.warning("fleet %s: waiting for another fleet on %s", self.prefix, net)
                    warned = True
                time.sleep(0.2)
        self._subnet_lock = fd

    def _check_subnet_free(self) -> None:
        """Refuse a subnet the host already has an address in: routes would clash."""
        for link in json.loads(_ip("-j", "-4", "addr", "show") or "[]"):
            for info in link.get("addr_info", []):
                net = ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False)
                if net.overlaps(self.subnet):
                    raise SubnetInUseError(
                        f"subnet {self.subnet} overlaps {net} on {link.get('ifname')}: is "
                        "another fleet using it? Remove that address (or stop what made it), "
                        "or give the Linux Node documents addresses in another /24"
                    )

    def _prepare_workdir(self) -> None:
        with _step("-", "client key"):
            # A reused workdir (the sandbox keeps one) holds the node folders of an
            # earlier run; their mounts lived in the nodes' private namespaces only.
            shutil.rmtree(self.workdir / "nodes", ignore_errors=True)
            (self.workdir / "nodes").mkdir(parents=True, exist_ok=True)
            for path in (self.private_key_file, self.public_key_file):
                path.unlink(missing_ok=True)
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleet-client",
                  "-f", str(self.private_key_file)])  # fmt: skip

    def _create_bridge(self) -> None:
        # A fixed MAC: otherwise the bridge takes the lowest port MAC, which
        # changes as nodes join and leaves stale ARP entries in running nodes.
        mac = "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))
        lines = [
            f"link add {self.bridge} address {mac} type bridge",
            *self._no_ipv6(self.bridge),
            f"addr add {self.gateway}/{self.subnet.prefixlen} dev {self.bridge}",
            f"link set {self.bridge} up",
        ]
        _ip(batch=lines)

    @staticmethod
    def _no_ipv6(dev: str) -> list[str]:
        """No IPv6 link-local address: no DAD, no router solicitations, quieter links."""
        return [f"link set {dev} addrgenmode none"] if Path("/proc/sys/net/ipv6").exists() else []

    def _create_host_side(self, node: FleetNode) -> None:
        _ip(batch=[
            f"netns add {node.netns}",
            f"link add {node.host_veth} type veth peer name eth0 netns {node.netns}",
            *self._no_ipv6(node.host_veth),
            f"link set {node.host_veth} master {self.bridge}",
            f"link set {node.host_veth} up",
        ])  # fmt: skip

    def _boot_nodes(self) -> None:
        client_key = self.public_key_file.read_text().strip()
        with ThreadPoolExecutor(max_workers=min(16, len(self.nodes) or 1)) as pool:
            futures = [pool.submit(self._boot_node, node, client_key)
                       for node in self.nodes.values()]  # fmt: skip
            errors = [exc for f in futures if (exc := f.exception()) is not None]
        for extra in errors[1:]:
            log.error("fleet %s: %s", self.prefix, extra)
        if errors:
            raise errors[0]

    def _boot_node(self, node: FleetNode, client_key: str) -> None:
        deadline = time.monotonic() + _BOOT_TIMEOUT
        with _step(node.name, "seed files"):
            self._write_seed(node, client_key)
        with _step(node.name, "node network"):
            _ip(netns=node.netns, batch=[
                "link set lo up",
                *self._no_ipv6("eth0"),
                f"addr add {node.address}/{self.subnet.prefixlen} dev eth0",
                "link set eth0 up",
                f"route add default via {self.gateway}",
            ])  # fmt: skip
        with _step(node.name, "filesystem"):
            node._boot_filesystem(self.tmpfs_size, deadline)
        with _step(node.name, "sshd"):
            node._start_sshd()
            node._wait_sshd(deadline)

    def _write_seed(self, node: FleetNode, client_key: str) -> None:
        """Files the node's init installs into its root (see _INIT_SCRIPT)."""
        seed = node.state_dir / "seed"
        seed.mkdir(parents=True)
        key = seed / "ssh_host_ed25519_key"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{node.name}",
              "-f", str(key)])  # fmt: skip
        # Keep "type base64", drop the comment: that is what known_hosts holds.
        node.host_public_key = " ".join(key.with_suffix(".pub").read_text().split()[:2])
        (seed / "sshd_config").write_text(_SSHD_CONFIG.format(name=node.name, address=node.address))
        (seed / "authorized_keys").write_text(client_key + "\n")
        (seed / "hostname").write_text(node.name + "\n")
        hosts = ["127.0.0.1\tlocalhost", f"{self.gateway}\tfleet-gateway"]
        hosts += [f"{other.address}\t{other.name}" for other in self.nodes.values()]
        (seed / "hosts").write_text("\n".join(hosts) + "\n")
        (seed / "machine-id").write_text(secrets.token_hex(16) + "\n")
        # The host's resolvers are unreachable from nodes: without this every
        # lookup that misses /etc/hosts (getent tries IPv6 first) waits for
        # DNS timeouts.  No nameserver means 127.0.0.1, which fails at once.
        (seed / "resolv.conf").write_text("# fleet node: no DNS, /etc/hosts names the nodes\n")

    # -- helpers for tests ---------------------------------------------------

    def write_known_hosts(self, path: Path, overrides: Mapping[str, str] | None = None) -> None:
        """Write an OpenSSH known_hosts for every node.

        Nodes named in overrides get the given public key ("ssh-ed25519 AAAA...")
        instead of their own, to test host key verification failures.
        """
        overrides = dict(overrides or {})
        unknown = set(overrides) - set(self.nodes)
        if unknown:
            raise ValueError(f"unknown nodes in overrides: {sorted(unknown)}")
        lines = []
        for node in self.nodes.values():
            host = node.address if node.port == 22 else f"[{node.address}]:{node.port}"
            lines.append(f"{host} {overrides.get(node.name, node.host_public_key)}\n")
        Path(path).write_text("".join(lines))

    def ssh_options(self, known_hosts: Path | None = None) -> list[str]:
        """Options for the `ssh` client binary to reach the nodes non-interactively."""
        return [
            "-i", str(self.private_key_file),
            "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts_file}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "ConnectTimeout=5",
            "-F", "/dev/null",
        ]  # fmt: skip

    def ssh_argv(self, node: str, command: str, *, known_hosts: Path | None = None) -> list[str]:
        """argv that runs command on node through the real `ssh` client as root."""
        target = self.nodes[node]
        return ["ssh", *self.ssh_options(known_hosts), "-p", str(target.port),
                f"root@{target.address}", command]  # fmt: skip


# --------------------------------------------------------------------------
# kernel object cleanup


def _netns_names() -> list[str]:
    return [line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()]


def _link_names() -> list[str]:
    return [link["ifname"] for link in json.loads(_ip("-j", "link", "show") or "[]")]


def _remove_objects(netns_pred: Callable[[str], bool], link_pred: Callable[[str], bool]) -> None:
    """Kill the processes in, then delete, the matching netns; delete matching links.

    Never raises: it runs from stop() on partially started fleets.
    """
    try:
        for name in filter(netns_pred, _netns_names()):
            with contextlib.suppress(Exception):
                for pid in _ip("netns", "pids", name).split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            try:
                _ip("netns", "del", name)
            except Exception as exc:
                log.warning("deleting netns %s failed: %s", name, _describe(exc))
        # Deleting a veth end deletes its peer; the bridge goes last.
        links = sorted(filter(link_pred, _link_names()), key=lambda n: n.endswith("br"))
        for name in links:
            try:
                _ip("link", "del", name)
            except subprocess.CalledProcessError as exc:
                # Already gone with its netns (veth peers vanish asynchronously).
                if b"Cannot find device" not in (exc.stderr or b""):
                    log.warning("deleting link %s failed: %s", name, _describe(exc))
    except Exception:
        log.warning("fleet cleanup failed", exc_info=True)


def _remove_stale_objects() -> None:
    """Remove netns and links of fleets whose process is gone (crashed test runs)."""

    def stale(pattern: re.Pattern[str]) -> Callable[[str], bool]:
        def matches(name: str) -> bool:
            found = pattern.match(name)
            return found is not None and not _pid_alive(int(found.group(1), 16))

        return matches

    _remove_objects(stale(_OWNED_NETNS), stale(_OWNED_LINK))
