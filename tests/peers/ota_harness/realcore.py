"""Build and run the real Spark Core device protocol code on the host, against our cloud server.

The three device codes come from ../shared/peers (never copied into the project): stock
core-communication-lib master (0.3.x), its feature/flasher_additions branch (SaveBegin)
and Device OS v0.4.9 `communication/` (legacy protocol, fast OTA). Each is unpacked into
a temporary directory and compiled with g++ together with our harness (harness.cpp: TCP,
millis, CRC, the Core's external-flash storage and boot behaviour). `RealCore` runs one
as a process whose 2 MB flash image is a file, provisioned like a Core (server key at
0x1000, server address at 0x1180, device key at 0x2000). Extra C/C++ sources (an
application such as the device agent, defining the sf_app_* hooks of sf_app.h) can be
linked in with `build(..., extra_sources=...)`.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
PEERS = Path(os.environ.get("SPARKFLASH_PEERS", ROOT.parent / "shared" / "peers"))

FLASH_SIZE, INTERNAL_SIZE = 0x200000, 0x20000


@dataclass(frozen=True)
class Kind:
    """One device code: its archive, the harness dialect and what it can do."""

    name: str
    archive: str
    dialect: str
    generation: str  # what the server should detect: "ccl" (52-byte handshake) or "os"
    save_begin: bool


KINDS = {
    "stock": Kind("stock", "core-communication-lib-master.tar.gz", "SF_DIALECT_CCL", "ccl", False),
    "flasher": Kind("flasher", "core-communication-lib-flasher.tar.gz", "SF_DIALECT_CCL_SAVE", "ccl", True),
    "deviceos": Kind("deviceos", "device-os-v0.4.9.tar.gz", "SF_DIALECT_OS", "os", False),
}


def require_peers(archive: str) -> Path:
    """Path of a peer archive; skip with the reason outside CI, fail under CI."""
    p = PEERS / archive
    if not p.is_file():
        msg = f"{p} is missing (the real device code; see the peers README)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    for tool in ("g++",):
        if shutil.which(tool) is None:
            (pytest.fail if os.environ.get("CI") else pytest.skip)(f"{tool} is not installed (apt-get install g++)")
    if not Path("/usr/include/zlib.h").exists():
        (pytest.fail if os.environ.get("CI") else pytest.skip)("zlib.h is missing (apt-get install zlib1g-dev)")
    return p


def _unpack(archive: Path, dest: Path, members: Sequence[str] | None = None) -> Path:
    with tarfile.open(archive) as tar:
        names = [m for m in tar.getmembers()
                 if members is None or any(m.name.startswith(p) or f"/{p}" in m.name for p in members)]
        tar.extractall(dest, members=names, filter="data")
    [top] = [p for p in dest.iterdir() if p.is_dir()]
    return top


def _run(cmd: list[str], cwd: Path) -> None:
    r = subprocess.run(["nice", *cmd], cwd=cwd, capture_output=True, text=True, check=False)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd[:3])}... failed in {cwd}:\n{r.stderr[-4000:]}")


def build(kind: str, workdir: Path, extra_sources: Sequence[Path] = (), extra_flags: Sequence[str] = ()) -> Path:
    """Compile the harness with one real device code; returns the executable.

    extra_sources: an application's .c (gcc -std=c99) and .cpp files with -Wall -Wextra
    -Werror and extra_flags (e.g. its -I); they define the sf_app_* hooks of sf_app.h."""
    k = KINDS[kind]
    archive = require_peers(k.archive)
    workdir.mkdir(parents=True, exist_ok=True)
    exe = workdir / f"harness-{kind}"
    if exe.exists():
        return exe
    src = workdir / "src"
    if k.dialect == "SF_DIALECT_OS":
        top = _unpack(archive, src, ["communication/", "hal/inc/", "hal/shared/", "platform/shared/inc/", "services/inc/"])
        comm = top / "communication"
        inc = [comm / "src", comm / "lib/tropicssl/include", top / "hal/inc", top / "hal/shared",
               top / "platform/shared/inc", top / "services/inc"]
        sources = [comm / "src" / f for f in ("handshake.cpp", "coap.cpp", "spark_protocol.cpp", "events.cpp", "messages.cpp")]
        ssl = comm / "lib/tropicssl/library"
        flags = ["-std=gnu++11", "-DPLATFORM_ID=0"] + [f"-include{h}" for h in ("cstddef", "cstdint", "cstring", "cstdlib")]
    else:
        top = _unpack(archive, src)
        inc = [top / "src", top / "lib/tropicssl/include"]
        sources = [top / "src" / f for f in ("handshake.cpp", "coap.cpp", "spark_protocol.cpp", "events.cpp")]
        ssl = top / "lib/tropicssl/library"
        flags = []
    sources += [ssl / f for f in ("aes.c", "bignum.c", "rsa.c", "sha1.c")]
    objs = workdir / "obj"
    objs.mkdir(exist_ok=True)
    isys = [a for d in inc for a in ("-isystem", str(d))]
    # their code with its own warnings silenced; ours strictly
    procs = []
    out: list[Path] = []
    for s in sources:
        o = objs / (s.stem + ".o")
        lang = ["-x", "c++"] if s.suffix == ".c" else []
        procs.append(subprocess.Popen(["nice", "g++", "-O1", "-w", *flags, f"-D{k.dialect}", *isys, *lang,
                                       "-c", str(s), "-o", str(o)],
                                      stderr=subprocess.PIPE, text=True))
        out.append(o)
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise RuntimeError(f"building {k.archive} for the host failed:\n{err[-4000:]}")
    ours = [HERE / "harness.cpp", *extra_sources]
    for s in ours:
        o = objs / ("sf_" + s.stem + ".o")
        # C sources (the device agent's) as C99 with gcc, C++ with the library's dialect
        lang = ["gcc", "-std=c99"] if s.suffix == ".c" else ["g++", *flags, *isys]
        _run([*lang, "-O1", "-Wall", "-Wextra", "-Werror", f"-D{k.dialect}", f"-I{HERE}", *extra_flags,
              "-c", str(s), "-o", str(o)], workdir)
        out.append(o)
    _run(["g++", "-o", str(exe), *map(str, out), "-lz"], workdir)
    return exe


def device_key_der(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


@dataclass
class RealCore:
    """One real-code device process; its flash is `dir/flash.bin`, its internal flash `dir/internal.bin`."""

    exe: Path
    dir: Path
    port: int
    device_key: rsa.RSAPrivateKey
    server_public_der: bytes
    args: list[str] = field(default_factory=list)
    device_id: str = field(default_factory=lambda: secrets.token_hex(12))
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        flash = bytearray(b"\xff" * FLASH_SIZE)
        flash[0x1000 : 0x1000 + len(self.server_public_der)] = self.server_public_der
        flash[0x1180 : 0x1180 + 6] = bytes([0, 4, 127, 0, 0, 1])
        der = device_key_der(self.device_key)
        flash[0x2000 : 0x2000 + 612] = der.ljust(612, b"\x00")
        (self.dir / "flash.bin").write_bytes(flash)
        (self.dir / "internal.bin").write_bytes(b"\xff" * INTERNAL_SIZE + b"\x00")
        self.log_path = self.dir / "device.log"

    @property
    def public_pem(self) -> bytes:
        return self.device_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo)

    def start(self, *extra: str) -> RealCore:
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - the process writes to it until kill()
        env = {k: v for k, v in os.environ.items() if k != "SF_HARNESS_REBOOTED"}
        self.proc = subprocess.Popen([str(self.exe), str(self.dir / "flash.bin"), str(self.dir / "internal.bin"),
                                      self.device_id, str(self.port), *self.args, *extra],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        return self

    def kill(self) -> None:
        """SIGKILL, as pulling the power: the flash file keeps what was written."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None
        self.log.close()

    stop = kill

    def lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def count(self, pattern: str) -> int:
        rx = re.compile(pattern)
        return sum(1 for ln in self.lines() if rx.fullmatch(ln))

    def wait_line(self, pattern: str, timeout: float = 20.0, n: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while self.count(pattern) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"device never logged {pattern!r} ({n}x); log tail: {self.lines()[-10:]}")
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"device exited with {self.proc.returncode}; log tail: {self.lines()[-10:]}")
            time.sleep(0.02)

    def flash(self, address: int, size: int) -> bytes:
        with open(self.dir / "flash.bin", "rb") as f:
            f.seek(address)
            return f.read(size)

    def internal(self, address: int, size: int) -> bytes:
        with open(self.dir / "internal.bin", "rb") as f:
            f.seek(address - 0x08000000)
            return f.read(size)

    def digest(self) -> str:
        return hashlib.sha256((self.dir / "flash.bin").read_bytes()).hexdigest()
