"""`sparkflash manifest build|show|verify|sign`: release YAML → signed canonical manifest."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sparkflash.boards import Board, load_board
from sparkflash.cli.output import fmt_size, plural, say
from sparkflash.errors import InputError
from sparkflash.manifest.build import build_release, plan_release
from sparkflash.manifest.keys import load_signer
from sparkflash.manifest.model import Manifest
from sparkflash.manifest.release import MANIFEST_NAME, open_release, sign_manifest, verify_manifest_signature
from sparkflash.manifest.svg import render_svg
from sparkflash.manifest.trust import load_trust

__all__ = ["register"]


def _pair(s: str) -> tuple[str, str]:
    name, sep, value = s.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {s!r}")
    return name, value


def _manifest_path(p: Path) -> Path:
    return p / MANIFEST_NAME if p.is_dir() else p


def _add_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--firmware", type=Path, help="the firmware .bin for a {build: firmware} source")
    p.add_argument("--artifact", type=_pair, action="append", default=[], metavar="NAME=PATH",
                   help="path of another {build: NAME} source")
    p.add_argument("--strict-sectors", action="store_true", help="sectors shared by two regions are an error")
    p.add_argument("--allow-dir", type=Path, action="append", default=[], metavar="DIR",
                   help="file:/dir: sources may also come from DIR (default: only the YAML's directory)")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("manifest", help="lay out, sign and verify release manifests",
                       description="Lay out, sign and verify release manifests (docs/manifest.md).")
    ms = p.add_subparsers(dest="manifest_command", metavar="COMMAND", required=True)

    b = ms.add_parser("build", help="release YAML -> DIR/manifest.json + DIR/blobs/sha256/<hex>")
    b.add_argument("yaml", type=Path, help="release YAML (e.g. manifests/example.yaml)")
    b.add_argument("-o", "--out", type=Path, required=True, help="output directory (holds one release)")
    b.add_argument("--meta", type=_pair, action="append", default=[], metavar="KEY=VALUE",
                   help="pin extra metadata (e.g. a build date) into the manifest")
    b.add_argument("--key", help="also sign with this Ed25519 private key (PEM path or pkcs11: URI)")
    _add_inputs(b)
    b.set_defaults(func=_build)

    s = ms.add_parser("show", help="print the layout as a table (YAML, release dir or manifest.json)")
    s.add_argument("source", type=Path, help="release YAML, release directory or manifest.json")
    s.add_argument("--svg", type=Path, help="also write an SVG map of both flashes here")
    _add_inputs(s)
    s.set_defaults(func=_show)

    v = ms.add_parser("verify", help="check the signature against trusted keys and every blob digest")
    v.add_argument("release", type=Path, help="release dir or its manifest.json")
    v.add_argument("--trust", type=Path, action="append", default=[], required=True,
                   help="root of trust (ROOT.root.json), or trusted public keys (.pub.pem files or directories)")
    v.set_defaults(func=_verify)

    g = ms.add_parser("sign", help="write manifest.json.sig next to the manifest")
    g.add_argument("release", type=Path, help="release dir or its manifest.json")
    g.add_argument("--key", action="append", required=True,
                   help="Ed25519 private key (PEM path or RFC 7512 pkcs11: URI); repeat to sign with several")
    g.add_argument("--add", action="store_true",
                   help="keep the signatures already in manifest.json.sig (a co-signer adds theirs: k-of-n)")
    g.set_defaults(func=_sign)


def _warn(warnings: tuple[str, ...]) -> None:
    for w in warnings:
        print(f"sparkflash: warning: {w}", file=sys.stderr)


def _table(m: Manifest, board: Board) -> str:
    """One block per board memory (both flashes on the Core), regions in address order."""
    head: tuple[str, ...] = ("REGION", "KIND", "START", "END", "SIZE", "SECTORS", "AREA", "SHA256", "CRC32")
    blocks: list[tuple[str, list[tuple[str, ...]]]] = []
    for mem in board.memories:
        rows: list[tuple[str, ...]] = [head]
        for r in sorted((r for r in m.regions if r.memory == mem.name), key=lambda r: r.address):
            areas = [a for a in mem.areas if a.start <= r.address < a.end]
            area = min(areas, key=lambda a: a.size).name if areas else "-"
            rows.append((r.name, r.kind, f"0x{r.address:08x}", f"0x{r.end:08x}", str(r.size), str(len(r.erase)),
                         area, r.sha256[:16], f"{r.crc32:08x}"))
        used = sum(r.size for r in m.regions if r.memory == mem.name)
        title = (f"{mem.name} flash 0x{mem.base:08x}..0x{mem.end:08x} ({fmt_size(mem.size)}, "
                 f"{fmt_size(mem.sector_size)} sectors): {plural(len(rows) - 1, 'region')}, {fmt_size(used)} used")
        blocks.append((title, rows))
    widths = [max(len(row[i]) for _, rows in blocks for row in rows) for i in range(len(head))]
    lines = [f"{m.name} {m.version} for {m.board}"]
    for title, rows in blocks:
        lines.append(title)
        if len(rows) > 1:
            lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def _doc(m: Manifest, **extra: Any) -> dict[str, Any]:
    return {**m.to_json(), **extra}


def _artifacts(args: argparse.Namespace) -> dict[str, Path]:
    arts = {n: Path(v) for n, v in args.artifact}
    if args.firmware is not None:
        arts["firmware"] = args.firmware
    return arts


def _build(args: argparse.Namespace) -> int:
    signer = load_signer(args.key) if args.key is not None else None  # a bad key fails before any output
    res = build_release(args.yaml, args.out, artifacts=_artifacts(args), strict_sectors=args.strict_sectors,
                        meta=dict(args.meta), allow_dirs=tuple(args.allow_dir))
    _warn(res.warnings)
    sig = sign_manifest(res.manifest_path, signer) if signer is not None else None
    if args.json:
        print(json.dumps(_doc(res.manifest, manifest_path=str(res.manifest_path), warnings=list(res.warnings),
                              signature=str(sig) if sig else None, ok=True, exit_code=0), sort_keys=True))
        return 0
    if not args.quiet:
        print(_table(res.manifest, res.board))
    note = "" if res.changed else " (unchanged)"
    if signer is not None:
        say(args, f"wrote {res.manifest_path}{note} and {sig} (key id {signer.key_id})")
    else:
        say(args, f"wrote {res.manifest_path}{note}; sign it with `sparkflash manifest sign {args.out} --key KEY.pem`")
    return 0


def _show(args: argparse.Namespace) -> int:
    board: Board
    if args.source.suffix in (".yaml", ".yml"):
        plan = plan_release(args.source, artifacts=_artifacts(args), strict_sectors=args.strict_sectors,
                            allow_dirs=tuple(args.allow_dir))
        _warn(plan.warnings)
        manifest, board = plan.manifest, plan.board
    else:
        mpath = _manifest_path(args.source)
        try:
            raw = mpath.read_bytes()
        except OSError as e:
            raise InputError(f"{mpath}: cannot read manifest: {e.strerror}") from None
        manifest = Manifest.from_bytes(raw, str(mpath))
        board = load_board(manifest.board)
    if args.svg is not None:
        args.svg.write_text(render_svg(manifest, board), encoding="utf-8")
    if args.json:
        print(json.dumps(_doc(manifest), sort_keys=True))
    else:
        print(_table(manifest, board))
        if args.svg is not None:
            say(args, f"wrote {args.svg}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    mpath = _manifest_path(args.release)
    trust = load_trust(args.trust)
    rel = open_release(mpath, trust)
    rel.verify_blobs()
    m = rel.manifest
    assert rel.signature is not None
    signed_by = verify_manifest_signature(trust, rel.raw, rel.signature, str(mpath))
    if args.json:
        print(json.dumps({"ok": True, "exit_code": 0, "manifest": str(mpath), "name": m.name, "version": m.version,
                          "key_id": signed_by[0], "signed_by": signed_by, "regions": len(m.regions)}, sort_keys=True))
    else:
        print(f"OK: {m.name} {m.version}: signature by key {', '.join(k[:16] + '…' for k in signed_by)} and "
              f"{plural(len(m.regions), 'blob digest')} verified")
    return 0


def _sign(args: argparse.Namespace) -> int:
    signers = [load_signer(k) for k in args.key]
    out = sign_manifest(_manifest_path(args.release), signers, add=args.add)
    kids = [s.key_id for s in signers]
    if args.json:
        print(json.dumps({"ok": True, "exit_code": 0, "signature": str(out), "key_id": kids[0], "key_ids": kids},
                         sort_keys=True))
    elif not args.quiet:
        print(f"wrote {out} (key id {', '.join(kids)})")
    return 0
