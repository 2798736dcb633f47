"""Throwaway real services on loopback, for the tests, `tools/fleet-demo` and `tools/bench fleet`:
Debian's PostgreSQL and HAProxy, and `sparkflash cloud serve` instances, each in a temporary
directory, run as an unprivileged user when started by root, stopped (and their directory
removed) by `stop()`.

- `LocalPostgres`: initdb into the directory, a unix socket there and no TCP listener, trust
  authentication for that socket only.
- `LocalHaproxy`: TCP mode in front of N instances, `leastconn`, a health check that waits for
  the server's handshake nonce (a process that accepts but no longer serves is taken out),
  a failed connection redispatched to another instance, sessions of a server marked down cut
  so its devices reconnect, and the per-address connection limit the instances can no longer
  apply themselves (behind the balancer every connection comes from its address).
- `CloudInstance`: one `sparkflash cloud serve --database ... --instance ...` process.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["CloudInstance", "LocalCluster", "LocalHaproxy", "LocalPostgres", "ServiceError", "free_port", "own_dirs",
           "pg_bindir", "rss_kib", "stop_process", "unprivileged"]


class ServiceError(RuntimeError):
    """A local service would not start; the message carries the end of its log."""


def unprivileged(*names: str) -> dict[str, int]:
    """Popen's user/group for the first of `names` that exists, when we are root (postgres refuses to
    run as root; nothing here needs it); {} otherwise."""
    if os.geteuid() != 0:
        return {}
    for name in names:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": pw.pw_uid, "group": pw.pw_gid}
    raise ServiceError(f"running as root and none of the accounts {', '.join(names)} exists to drop to")


def own_dirs(paths: list[Path], who: dict[str, int]) -> None:
    """Directories a service started as `who` (from `unprivileged`) must write in."""
    for p in paths:
        if who:
            os.chown(p, who["user"], who["group"])
        os.chmod(p, 0o755)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (for configs that need it written before the service starts)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def rss_kib(pid: int) -> int:
    """Resident memory of one process (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise ServiceError(f"process {pid}: no VmRSS")


def stop_process(proc: subprocess.Popen[Any], grace_s: float) -> None:
    """SIGTERM (a service's clean shutdown), SIGKILL after `grace_s`, and reap it."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def pg_bindir() -> Path | None:
    """The newest Debian PostgreSQL's bin directory, if one is installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


class LocalPostgres:
    """A throwaway PostgreSQL cluster; `url(db)` for a database in it, `create_db` for a fresh schema."""

    def __init__(self, bindir: Path, *, port: int = 54329, max_connections: int = 200) -> None:
        self.bindir, self.port, self.max_connections = bindir, port, max_connections
        self.root = Path(tempfile.mkdtemp(prefix="sparkflash-pg-"))
        self.data, self.sock = self.root / "data", self.root / "sock"
        self.sock.mkdir()
        self.user = unprivileged("postgres", "nobody")
        own_dirs([self.root, self.sock], self.user)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def _run(self, *args: str) -> None:
        r = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False, user=self.user.get("user"),
                           group=self.user.get("group"))
        if r.returncode:
            raise ServiceError(f"{' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}")

    def start(self) -> LocalPostgres:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "fleet", "--auth=trust", "--no-sync",
                  "-E", "UTF8", "--locale=C")
        self._log = open(self.root / "postgres.log", "wb")  # noqa: SIM115 (open for the server's life)
        self.proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-k", str(self.sock), "-p", str(self.port),
             "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", f"max_connections={self.max_connections}"],
            stdout=self._log, stderr=subprocess.STDOUT, user=self.user.get("user"),
            group=self.user.get("group"))
        end = time.monotonic() + 30
        while not (self.sock / f".s.PGSQL.{self.port}").exists():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise ServiceError(f"postgres did not start: {_tail(self.root / 'postgres.log')}")
            time.sleep(0.05)
        self._ready()
        return self

    def _ready(self) -> None:
        import psycopg

        end = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url("postgres"), autocommit=True).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.05)

    def url(self, db: str) -> str:
        return f"postgresql://fleet@/{db}?host={self.sock}&port={self.port}"

    def create_db(self, name: str) -> str:
        """A fresh schema in the one database (instant, where CREATE DATABASE takes most of a second): its URL."""
        import psycopg

        if not name.isidentifier():
            raise ValueError(f"schema name {name!r}")
        with psycopg.connect(self.url("postgres"), autocommit=True) as c:
            c.execute(f'CREATE SCHEMA "{name}"')
        return self.url("postgres") + f"&options=-csearch_path%3D{name}"

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 20)  # SIGTERM: smart shutdown
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass(frozen=True)
class Backend:
    name: str
    host: str
    port: int


def haproxy_config(frontend: tuple[str, int], backends: list[Backend], *, stats_socket: Path, per_source: int,
                   maxconn: int, check_ms: int = 500) -> str:
    """TCP mode; see the module docstring for why each line is there."""
    servers = "\n".join(f"    server {b.name} {b.host}:{b.port} check" for b in backends)
    return f"""global
    maxconn {maxconn}
    stats socket {stats_socket} mode 600 level admin

defaults
    mode tcp
    timeout connect 1s
    timeout client 120s   # devices ping every 15 s; the servers drop them after 60 s of silence
    timeout server 120s
    timeout check 1s
    retries 3
    option redispatch

frontend devices
    bind {frontend[0]}:{frontend[1]}
    maxconn {maxconn}
    stick-table type ip size 100k store conn_cur
    tcp-request connection track-sc0 src
    tcp-request connection reject if {{ sc0_conn_cur gt {per_source} }}
    default_backend instances

backend instances
    balance leastconn
    option tcp-check
    tcp-check connect
    tcp-check expect rbinary .   # the handshake nonce: the instance's event loop answers
    default-server inter {check_ms}ms fall 2 rise 2 on-marked-down shutdown-sessions
{servers}
"""


class LocalHaproxy:
    """Debian's HAProxy on a loopback port in front of `backends` [(name, host, port)]."""

    def __init__(self, backends: list[tuple[str, str, int]], *, host: str = "127.0.0.1", port: int = 0,
                 per_source: int = 64, maxconn: int = 4096, binary: str | None = None) -> None:
        self.binary = binary or shutil.which("haproxy") or "/usr/sbin/haproxy"
        self.backends = [Backend(*b) for b in backends]
        self.host, self.port = host, port or free_port(host)
        self.per_source, self.maxconn = per_source, maxconn
        self.root = Path(tempfile.mkdtemp(prefix="sparkflash-haproxy-"))
        self.user = unprivileged("nobody")
        own_dirs([self.root], self.user)
        self.config = self.root / "haproxy.cfg"
        self.stats = self.root / "admin.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 20.0) -> LocalHaproxy:
        if not Path(self.binary).exists():
            raise ServiceError(f"haproxy is not installed ({self.binary}); tools/setup installs it")
        self.config.write_text(haproxy_config((self.host, self.port), self.backends, stats_socket=self.stats,
                                              per_source=self.per_source, maxconn=self.maxconn))
        self._log = open(self.root / "haproxy.log", "wb")  # noqa: SIM115 (open for the process's life)
        self.proc = subprocess.Popen([self.binary, "-db", "-f", str(self.config)], stdout=self._log,
                                     stderr=subprocess.STDOUT, user=self.user.get("user"), group=self.user.get("group"))
        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ServiceError(f"haproxy exited {self.proc.returncode}: {_tail(self.root / 'haproxy.log')}")
            try:
                if all(s == "UP" for s in self.states().values()):
                    return self
            except OSError:
                pass
            if time.monotonic() > end:
                raise ServiceError(f"haproxy: backends not all up after {timeout:g} s: {self._states_or_log()}")
            time.sleep(0.1)

    def _states_or_log(self) -> str:
        try:
            return json.dumps(self.states())
        except OSError:
            return _tail(self.root / "haproxy.log")

    def command(self, line: str) -> str:
        """One command on the stats socket (e.g. "show stat")."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.stats))
            s.sendall(line.encode() + b"\n")
            out = bytearray()
            while chunk := s.recv(65536):
                out += chunk
        return out.decode(errors="replace")

    def states(self) -> dict[str, str]:
        """backend server -> "UP", "DOWN", ... as the health checks see it."""
        lines = self.command("show stat").splitlines()
        if not lines or not lines[0].startswith("# "):
            raise OSError(f"haproxy stats: unexpected answer {lines[:1]!r}")
        head = lines[0][2:].split(",")
        out = {}
        for ln in lines[1:]:
            row = dict(zip(head, ln.split(","), strict=False))
            if row.get("pxname") == "instances" and row.get("svname") not in ("BACKEND", None):
                out[row["svname"]] = row.get("status", "").split(" ")[0]
        return out

    def wait_state(self, name: str, state: str, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while self.states().get(name) != state:
            if time.monotonic() > end:
                raise ServiceError(f"haproxy: {name} is not {state} after {timeout:g} s: {self.states()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 10)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.root, ignore_errors=True)


class CloudInstance:
    """One `sparkflash cloud serve` process with `--database` and `--instance`, on loopback ports."""

    def __init__(self, name: str, key: Path, devices: Path, database: str, *, log_dir: Path,
                 max_per_peer: int = 100_000, rsa_workers: int = 1, lease_s: float = 30.0,
                 extra: tuple[str, ...] = ("--insecure-unsigned",), python: str = sys.executable) -> None:
        self.name, self.key, self.devices, self.database = name, key, devices, database
        self.argv = [python, "-m", "sparkflash", "cloud", "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                     "--key", str(key), "--devices", str(devices), "--database", database, "--instance", name,
                     "--instance-lease", str(lease_s), "--max-per-peer", str(max_per_peer),
                     "--rsa-workers", str(rsa_workers), "--store", str(log_dir / f"{name}.store"), "--json", *extra]
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}
        self._log: IO[bytes] | None = None

    @property
    def port(self) -> int:
        return int(self.info["devices"].rsplit(":", 1)[1])

    @property
    def admin(self) -> str:
        return str(self.info["admin"])

    @property
    def token(self) -> str:
        return Path(self.info["token_file"]).read_text().strip()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> CloudInstance:
        env = dict(os.environ)
        pkg = str(Path(__file__).resolve().parents[2])  # site_scons: the same sparkflash as ours
        env["PYTHONPATH"] = pkg + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (open for the process's life)
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env)
        assert self.proc.stdout is not None
        end = time.monotonic() + timeout
        line = ""
        while not line:
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise ServiceError(f"instance {self.name} did not start: {_tail(self.log_path)}")
            line = self.proc.stdout.readline()
        self.info = json.loads(line)
        return self

    def rss_kib(self) -> int:
        """The instance and its RSA worker processes."""
        total = rss_kib(self.pid)
        with contextlib.suppress(OSError):
            for child in Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split():
                with contextlib.suppress(OSError, ServiceError):
                    total += rss_kib(int(child))
        return total

    def kill(self) -> None:
        """SIGKILL: no goodbye, no release of its devices (the lease does that)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                stop_process(self.proc, 15)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


class LocalCluster:
    """`n` instances sharing one fleet database and device directory, behind one HAProxy."""

    def __init__(self, root: Path, key: Path, devices: Path, database: str, *, n: int = 2, per_source: int = 100_000,
                 lease_s: float = 30.0, rsa_workers: int = 1, extra: tuple[str, ...] = ("--insecure-unsigned",)) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.instances = [CloudInstance(f"instance-{chr(ord('a') + i)}", key, devices, database, log_dir=root,
                                        lease_s=lease_s, rsa_workers=rsa_workers, extra=extra) for i in range(n)]
        self.per_source = per_source
        self.haproxy: LocalHaproxy | None = None

    def start(self) -> LocalCluster:
        try:
            for inst in self.instances:
                inst.start()
            self.haproxy = LocalHaproxy([(i.name, "127.0.0.1", i.port) for i in self.instances],
                                        per_source=self.per_source).start()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def address(self) -> tuple[str, int]:
        """Where devices connect: HAProxy's frontend."""
        assert self.haproxy is not None
        return self.haproxy.host, self.haproxy.port

    def instance(self, name: str) -> CloudInstance:
        return next(i for i in self.instances if i.name == name)

    def stop(self) -> None:
        if self.haproxy is not None:
            self.haproxy.stop()
            self.haproxy = None
        for inst in self.instances:
            inst.stop()
