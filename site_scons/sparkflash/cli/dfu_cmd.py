"""`sparkflash dfu pack|list|info`: .dfu files for dfu-util users, and a view of DFU devices.

`pack` turns a release (or ADDRESS FILE pairs) into one DfuSe file, one target per alt
setting (internal flash = alt 0, SPI flash = alt 1), flashable with
`dfu-util -d 1d50:607f -D out.dfu`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sparkflash.boards import Board, load_board
from sparkflash.cli.output import fmt_size, plural, say
from sparkflash.errors import InputError
from sparkflash.manifest.release import MANIFEST_NAME, open_release
from sparkflash.manifest.trust import load_trust
from sparkflash.protocols.dfu_file import (
    BCD_DFUSE,
    Element,
    Target,
    build_dfuse,
    parse_dfuse,
    parse_suffix,
)
from sparkflash.protocols.dfu_layout import parse_layout

__all__ = ["register", "pack_elements"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    d = sub.add_parser("dfu", help="DfuSe files and devices", description="DfuSe files (for dfu-util) and DFU devices.")
    ds = d.add_subparsers(dest="dfu_command", metavar="COMMAND", required=True)
    p = ds.add_parser("pack", help="write a DfuSe .dfu (one target per alt) from a release or ADDRESS FILE pairs",
                      description="Write one DfuSe .dfu file (internal flash = alt 0, SPI flash = alt 1) from a "
                                  "release, or from ADDRESS FILE pairs as esptool's write_flash takes them.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="manifest.json (or its directory), or ADDRESS FILE (e.g. 0x80000 font.bin); FILE@ADDRESS also works")
    p.add_argument("-o", "--out", type=Path, help="the .dfu file to write (required)")
    p.add_argument("--output", dest="out", type=Path, help=argparse.SUPPRESS)  # deprecated spelling of --out
    p.add_argument("--board", default="spark-core", help="board for ADDRESS FILE inputs (default spark-core)")
    p.add_argument("--trust", type=Path, action="append", default=[],
                   help="root of trust (ROOT.root.json) or trusted public key for a release")
    p.add_argument("--no-verify-signature", action="store_true", help="accept an unsigned release")
    p.add_argument("--allow-protected", action="store_true", help="ADDRESS FILE inputs may write protected areas")
    p.set_defaults(func=_pack)
    li = ds.add_parser("list", help="DFU devices, dfu-util -l style (USB, or --device virtual:DIR)",
                       description="List DFU devices like dfu-util -l (USB, or a virtual Core by --device).")
    li.add_argument("-d", "--device", action="append", default=[], help="VID:PID, usb:BUS-PORT or virtual:STATE_DIR")
    li.add_argument("--board", default="spark-core", help="board whose DFU VID:PID to look for (default spark-core)")
    li.set_defaults(func=_list)
    i = ds.add_parser("info", help="show the targets and elements of a .dfu file",
                      description="Show the DFU suffix, targets and elements of a .dfu file.")
    i.add_argument("file", type=Path, help="a .dfu file (plain DFU or DfuSe)")
    i.set_defaults(func=_info)


def _split_inputs(items: list[str]) -> list[tuple[str, int | None, str]]:
    """INPUT words -> (path, address or None for a release, label). ADDRESS FILE pairs come
    first in esptool's order; FILE@ADDRESS is the older spelling."""
    out: list[tuple[str, int | None, str]] = []
    i = 0
    while i < len(items):
        item = items[i]
        try:
            address = int(item, 0)
        except ValueError:
            address = None
        if address is not None and not Path(item).exists():
            if i + 1 >= len(items):
                raise InputError(f"address {item} has no FILE after it (use ADDRESS FILE, e.g. 0x80000 font.bin)")
            out.append((items[i + 1], address, f"{items[i + 1]} at {item}"))
            i += 2
            continue
        path_s, at, addr_s = item.rpartition("@")
        if at and not Path(item).exists():
            try:
                out.append((path_s, int(addr_s, 0), item))
            except ValueError:
                raise InputError(f"{item}: bad address {addr_s!r} (use ADDRESS FILE, e.g. 0x80000 font.bin)") from None
        else:
            out.append((item, None, item))
        i += 1
    return out


def pack_elements(board: Board, pieces: list[tuple[int, bytes, str]]) -> list[Target]:
    """Group (address, data, label) pieces into one target per alt, in address order."""
    by_alt: dict[int, list[Element]] = {}
    names: dict[int, str] = {}
    for address, data, label in sorted(pieces, key=lambda p: p[0]):
        mem = next((m for m in board.memories if m.contains(address, len(data))), None)
        if mem is None:
            raise InputError(f"{label}: 0x{address:08x}+{len(data)} is not inside one memory of {board.name}")
        by_alt.setdefault(mem.dfu_alt, []).append(Element(address, data))
        names[mem.dfu_alt] = parse_layout(mem.dfu_layout).name if mem.dfu_layout else mem.name
    return [Target(alt, names[alt], tuple(by_alt[alt])) for alt in sorted(by_alt)]


def _pieces(args: argparse.Namespace) -> tuple[Board, list[tuple[int, bytes, str]]]:
    board_name, pieces = args.board, []
    for path_s, address, label in _split_inputs(args.inputs):
        if address is not None:
            try:
                data = Path(path_s).read_bytes()
            except OSError as e:
                raise InputError(f"{path_s}: {e.strerror}") from e
            board = load_board(board_name)
            mem = next((m for m in board.memories if m.contains(address, len(data))), None)
            prot = mem.protected_overlap(address, len(data)) if mem else None
            if prot is not None and not args.allow_protected:
                raise InputError(f"{label}: 0x{address:08x}+{len(data)} writes the protected area {prot.name!r}; "
                                 "pass --allow-protected")
            pieces.append((address, data, label))
            continue
        mpath = Path(path_s)
        if mpath.is_dir():
            mpath = mpath / MANIFEST_NAME
        trust = load_trust(args.trust) if args.trust else None
        rel = open_release(mpath, trust, require_signature=not args.no_verify_signature)
        board_name = rel.manifest.board
        pieces += [(r.address, rel.blob(r), f"{mpath}: region {r.name!r}") for r in rel.manifest.regions]
    return load_board(board_name), pieces


def _pack(args: argparse.Namespace) -> int:
    if args.out is None:  # not argparse's required=True: the hidden --output spelling must satisfy it too
        raise InputError("dfu pack: pass -o/--out FILE.dfu")
    board, pieces = _pieces(args)
    vid, pid = board.usb["dfu"]
    raw = build_dfuse(pack_elements(board, pieces), vid, pid)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(raw)
    if args.json:
        print(json.dumps({"event": "result", "ok": True, "exit_code": 0, "file": str(args.out), "size": len(raw),
                          "elements": len(pieces), "vendor": vid, "product": pid}, sort_keys=True))
    else:
        say(args, f"{args.out}: {fmt_size(len(raw))}, {plural(len(pieces), 'element')}; flash with "
                  f"`dfu-util -d {vid:04x}:{pid:04x} -D {args.out}`")
    return 0


def _list(args: argparse.Namespace) -> int:
    from sparkflash.deploy.dfu_session import DfuSession, open_pipes
    from sparkflash.errors import TransportError

    vid, pid = load_board(args.board).usb["dfu"]
    try:
        pipes = open_pipes(args.device, vid, pid)
    except TransportError as e:
        if args.device:
            raise
        if args.json:
            print(json.dumps({"event": "result", "ok": True, "exit_code": 0, "devices": [], "note": str(e)}))
        else:
            say(args, f"No DFU devices found ({e})")
        return 0
    found = []
    for pipe in pipes:
        try:
            info = DfuSession(pipe).info
        finally:
            pipe.close()
        found.append(info)
        if not args.json:
            for line in info.lines():
                print(line)
    if args.json:
        devices = [{"name": i.name, "vendor": i.vendor, "product": i.product, "bcd_device": i.bcd_device,
                    "manufacturer": i.manufacturer, "product_name": i.product_name, "serial": i.serial,
                    "alt_names": {str(k): v for k, v in sorted(i.alt_names.items())}, "transfer_size": i.transfer_size}
                   for i in found]
        print(json.dumps({"event": "result", "ok": True, "exit_code": 0, "devices": devices}, sort_keys=True))
    return 0


def _info(args: argparse.Namespace) -> int:
    try:
        raw = args.file.read_bytes()
    except OSError as e:
        raise InputError(f"{args.file}: {e.strerror}") from e
    suffix = parse_suffix(raw, str(args.file))
    doc: dict[str, object] = {"file": str(args.file), "vendor": suffix.vendor, "product": suffix.product,
                              "bcd_device": suffix.bcd_device, "bcd_dfu": suffix.bcd_dfu, "crc": suffix.crc}
    if suffix.bcd_dfu == BCD_DFUSE:
        f = parse_dfuse(raw, str(args.file))
        doc["targets"] = [{"alt": t.alt, "name": t.name,
                           "elements": [{"address": e.address, "size": len(e.data)} for e in t.elements]}
                          for t in f.targets]
    else:
        doc["payload_size"] = len(raw) - 16
    if args.json:
        print(json.dumps({"ok": True, "exit_code": 0, **doc}, sort_keys=True))
        return 0
    print(f"{args.file}: DFU suffix {suffix.vendor:04x}:{suffix.product:04x} bcdDevice {suffix.bcd_device:04x} "
          f"bcdDFU {suffix.bcd_dfu:04x} CRC {suffix.crc:08x}")
    if "payload_size" in doc:
        print(f"  plain DFU file: {fmt_size(len(raw) - 16)} of payload (flash with -s ADDRESS)")
    for t in doc.get("targets", []):  # type: ignore[attr-defined]
        print(f"  target alt {t['alt']} \"{t['name']}\"")
        for el in t["elements"]:
            print(f"    0x{el['address']:08x}  {fmt_size(el['size'])}")
    return 0
