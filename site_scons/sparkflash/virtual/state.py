"""The virtual Spark Core's persistent state: flash images, identity and keys.

STATE_DIR/
    core.json       device id, product id/version, cloud port, system flags
    internal.bin    128 KiB STM32 flash image (bootloader area write-protected)
    external.bin    2 MiB SST25VF016B image; device key at 0x2000, server key at 0x1000,
                    server address TLV at 0x1180, as on a real Core
    serial.port     path to open for the serial port (STATE/tty -> current pty) while it runs
    dfu.sock        the DfuSe endpoint while the core runs

Everything a transport can observe lives in the images, so tests check the bytes
there, not in our bookkeeping.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.boards import Board, load_board
from sparkflash.protocols.core_keys import generate_device_key
from sparkflash.virtual.nor_flash import SST25VF016B_TIMING, STM32F1_TIMING, NorFlash

__all__ = ["CoreState", "DEVICE_KEY_SLOT", "server_address_tlv", "parse_server_address"]

DEVICE_KEY_SLOT = 612
# A recognisable stand-in for the bootloader, so reading it back proves it was kept.
BOOTLOADER_FILL = b"SPARK-BOOTLOADER"


def server_address_tlv(host: str) -> bytes:
    """The 128-byte TLV at 0x1180: type 0 = IPv4 (4 bytes), 1 = domain name."""
    parts = host.split(".")
    if len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts):
        body = bytes([0, 4]) + bytes(int(p) for p in parts)
    else:
        name = host.encode()
        body = bytes([1, len(name)]) + name
    return body.ljust(128, b"\xff")


def parse_server_address(tlv: bytes) -> str | None:
    if tlv[0] == 0:
        return ".".join(str(b) for b in tlv[2:6])
    if tlv[0] == 1:
        return tlv[2 : 2 + tlv[1]].decode(errors="replace")
    return None


@dataclass
class CoreState:
    path: Path
    board: Board
    internal: NorFlash
    external: NorFlash
    info: dict[str, Any]

    @property
    def device_id(self) -> bytes:
        return bytes.fromhex(self.info["device_id"])

    @classmethod
    def open(cls, path: Path, *, timing: bool = False, board: str = "spark-core") -> CoreState:
        """Open (creating on first use) the state directory."""
        path.mkdir(parents=True, exist_ok=True)
        b = load_board(board)
        intm, extm = b.memory("internal"), b.memory("external")
        boot = intm.area("bootloader")
        fresh = not (path / "core.json").exists()
        internal = NorFlash(
            path / "internal.bin", intm.base, intm.size, intm.sector_size,
            protected=((boot.start, boot.start + 0x4000),),  # option bytes protect pages 0-15
            timing=STM32F1_TIMING if timing else None,
        )
        external = NorFlash(
            path / "external.bin", extm.base, extm.size, extm.sector_size,
            timing=SST25VF016B_TIMING if timing else None,
        )
        if fresh:
            info: dict[str, Any] = {
                "device_id": secrets.token_hex(12),
                "product_id": 0xFFFF,
                "firmware_version": 0xFFFF,
                "cloud_port": 5683,
                "flags": {"ota_pending": False, "ota_flashed": False},
            }
            st = cls(path, b, internal, external, info)
            st._provision()
        else:
            st = cls(path, b, internal, external, json.loads((path / "core.json").read_text()))
        return st

    def _provision(self) -> None:
        boot = self.board.memory("internal").area("bootloader")
        image = (BOOTLOADER_FILL * (0x4000 // len(BOOTLOADER_FILL)))
        prot, self.internal.protected = self.internal.protected, ()  # the factory programs it once
        for a in range(boot.start, boot.start + len(image), self.internal.sector_size):
            self.internal.erase_sector(a)
        self.internal.program(boot.start, image)
        self.internal.protected = prot
        key = generate_device_key()  # one the Core's fixed-offset key reader reads back exactly
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
        self.external.write_erased(0x2000, der.ljust(DEVICE_KEY_SLOT, b"\x00"))
        self.save()

    def save(self) -> None:
        tmp = self.path / f".core.json.{os.getpid()}"
        tmp.write_text(json.dumps(self.info, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path / "core.json")

    def close(self) -> None:
        self.internal.close()
        self.external.close()

    # -- identity and keys, read from external flash as the firmware does -------------
    def device_private_key(self) -> rsa.RSAPrivateKey:
        raw = self.external.read(0x2000, DEVICE_KEY_SLOT)
        # DER SEQUENCE with a 2-byte long-form length: 30 82 LL LL
        length = 4 + int.from_bytes(raw[2:4], "big")
        k = serialization.load_der_private_key(raw[:length], None)
        assert isinstance(k, rsa.RSAPrivateKey)
        return k

    def device_public_pem(self) -> bytes:
        return self.device_private_key().public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def set_server(self, public_key_der: bytes, host: str, port: int) -> None:
        """Point the core at a cloud server: key at 0x1000 and TLV at 0x1180 share one sector."""
        sector = bytearray(self.external.read(0x1000, 0x1000))
        sector[0 : len(public_key_der)] = public_key_der
        sector[0x180:0x200] = server_address_tlv(host)
        self.external.write_erased(0x1000, bytes(sector))
        self.info["cloud_port"] = port
        self.save()

    def server(self) -> tuple[bytes, str | None, int]:
        """(server public key DER, host, port) as stored."""
        return (self.external.read(0x1000, 294), parse_server_address(self.external.read(0x1180, 128)),
                int(self.info["cloud_port"]))

    # -- the bootloader's OTA install, run on a (simulated) reset ---------------------
    def reset(self) -> bool:
        """Simulated reset. If an OTA image is pending, back up the app and install it."""
        flags = self.info["flags"]
        if not flags.get("ota_pending"):
            return False
        fw = self.board.firmware_address
        n = self.board.firmware_max_size
        ota = self.board.memory("external").area("ota").start
        backup = self.board.memory("external").area("backup").start
        app = self.internal.read(fw, n)
        self.external.write_erased(backup, app)
        image = self.external.read(ota, n)
        for a in range(fw, fw + n, self.internal.sector_size):
            self.internal.erase_sector(a)
        self.internal.program(fw, image)
        flags.update(ota_pending=False, ota_flashed=True)
        self.save()
        return True
