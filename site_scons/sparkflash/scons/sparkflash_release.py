"""SCons tool: the `manifest` and `sign` targets over sparkflash.manifest.

`scons manifest` lays out MANIFEST (default manifests/example.yaml) with the firmware in
env['SPARKFLASH_FIRMWARE_BIN'] into <variant>/dist/ (manifest.json + blobs/sha256/*);
`scons sign` adds manifest.json.sig with KEY (default build/keys/dev.pem, created with its
.pub.pem on first use). All logic lives in the package; this file only wires the graph:
every file the release reads is a source (directories walked recursively), and every
variable and library module that shapes the bytes is in the signature (varlist, Depends),
so the manifest is rebuilt exactly when a source, the YAML or a flag changes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from SCons.Script import ARGUMENTS, COMMAND_LINE_TARGETS, Action, Builder, GetOption

from sparkflash.scons.errors import stop_on_error

# The manifest modules (YAML, cryptography) are imported where used: a plain `scons`
# builds Default() (the firmware) only, and does not even read the release's YAML.

DEFAULT_MANIFEST = "#manifests/example.yaml"
DEFAULT_KEY = "#build/keys/dev.pem"


def _build_manifest(target: list[Any], source: list[Any], env: Any) -> int:
    from sparkflash.manifest.build import build_release

    firmware = env.get("SPARKFLASH_FIRMWARE_BIN")
    with stop_on_error():
        res = build_release(
            Path(str(source[0])),  # relative to the top directory, where SCons runs: shorter errors
            Path(target[0].dir.abspath),
            firmware=Path(env.File(firmware).abspath) if firmware else None,
            strict_sectors=bool(env["SPARKFLASH_STRICT_SECTORS"]),
            meta=dict(env["SPARKFLASH_META"]),
        )
    for w in res.warnings:
        print(f"sparkflash: warning: {w}")
    return 0


def _sign(target: list[Any], source: list[Any], env: Any) -> int:
    from sparkflash.manifest.keys import load_signer
    from sparkflash.manifest.release import sign_manifest

    with stop_on_error():
        signer = load_signer(Path(source[1].abspath))
        sign_manifest(Path(source[0].abspath), signer)
    print(f"signed {source[0]} with key id {signer.key_id}")
    return 0


def _dev_key(target: list[Any], source: list[Any], env: Any) -> int:
    """Create the development key once; an existing key is never replaced (it is Precious)."""
    from sparkflash.manifest.keys import generate_key

    if not os.path.exists(target[0].abspath):
        with stop_on_error():
            _, kid = generate_key(Path(target[0].abspath))
        print(f"created development signing key {target[0]} (key id {kid}); do not use it for real releases")
    return 0


def _release_inputs(env: Any, yaml_node: Any) -> list[Any]:
    """Files the release reads, found now (at read time) so SCons can hash them. Read-time,
    not a scanner: implicit_cache would keep a scanner's list while a dir source gains files.

    A YAML that does not parse yet gives no extra inputs; the build action then reports
    the error with its line, which is the better place for it."""
    from sparkflash.errors import SparkflashError
    from sparkflash.manifest.spec import load_release

    try:
        rel = load_release(Path(yaml_node.srcnode().abspath))
    except SparkflashError:
        return []
    base = Path(yaml_node.srcnode().abspath).parent
    nodes = [env.File(str(p)) for p in sorted(base.glob("boards/*.yaml"))]
    for r in rel.regions:
        p = base / r.source.value
        if r.source.kind == "file" and p.is_file():
            nodes.append(env.File(str(p)))
        elif r.source.kind == "dir" and p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                nodes += [env.File(os.path.join(root, f)) for f in sorted(files)]
    return nodes


def _content_node(env: Any, nodes: list[Any]) -> Any:
    """The release's own inputs (YAML, boards, blobs) decided by content, every run.

    SCons records whole-second mtimes and trusts a recorded hash when the mtime matches
    (sparkflash.scons.stored_hashes): an edit undone with its mtime restored would keep
    the signed manifest of the edit. A Value of their sha256, computed
    now, cannot be fooled that way. Files SCons builds itself (the firmware .bin) are
    left to SCons: it hashes what it just built."""
    import hashlib

    total = hashlib.sha256()
    for node in nodes:
        if node.has_builder():
            continue
        path = node.srcnode().abspath
        try:
            with open(path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError:
            digest = "missing"
        total.update(f"{path}\0{digest}\0".encode())
    return env.Value(f"release inputs {total.hexdigest()}")


def _library_files(env: Any) -> list[Any]:
    """The modules that produce the bytes: SCons hashes only the action's own code."""
    import sparkflash

    root = Path(sparkflash.__file__).parent
    return [env.File(str(p)) for d, suffix in (("manifest", ".py"), ("boards", ".yaml"), ("boards", ".py"))
            for p in sorted((root / d).glob(f"*{suffix}"))]


def _cleaning_release_only() -> bool:
    """`scons -c manifest` / `scons -c sign` remove dist/ only: `-c` also removes every
    derived source of its targets, so the firmware is left out of the graph for that run."""
    targets = set(COMMAND_LINE_TARGETS)
    return bool(GetOption("clean")) and bool(targets) and targets <= {"manifest", "sign"}


def release_graph_wanted() -> bool:
    """Whether this run can reach the release nodes: a plain `scons` builds the Default()
    targets only (the firmware), `scons -c` cleans only those, so their graph (the YAML
    read, every input hashed: ~15 ms) is left out; any named target or `-h` brings it in."""
    return bool(COMMAND_LINE_TARGETS) or bool(GetOption("help"))


HELP = ("\nRelease targets (sparkflash_release):\n"
        "  manifest   lay out MANIFEST=path (default manifests/example.yaml) into <variant>/dist/\n"
        "  sign       sign <variant>/dist/manifest.json with KEY=path (default build/keys/dev.pem)\n"
        "             STRICT_SECTORS=1 makes sectors shared by two regions an error\n")


def generate(env: Any) -> None:
    env.AppendUnique(SPARKFLASH_ARGUMENT_NAMES=["MANIFEST", "KEY", "STRICT_SECTORS"])
    env.Help(HELP, append=True)
    env.SetDefault(
        SPARKFLASH_MANIFEST=ARGUMENTS.get("MANIFEST", DEFAULT_MANIFEST),
        SPARKFLASH_KEY=ARGUMENTS.get("KEY", DEFAULT_KEY),
        SPARKFLASH_STRICT_SECTORS=ARGUMENTS.get("STRICT_SECTORS", "0") not in ("0", "", "no", "false"),
        SPARKFLASH_META={},
        SPARKFLASH_DIST=env.get("SPARKFLASH_VARIANT_DIR", env.Dir("#build/release")),
        SPARKFLASH_MANIFESTCOMSTR="Laying out release $SOURCE -> $TARGET",
        SPARKFLASH_SIGNCOMSTR="Signing $TARGET",
        SPARKFLASH_KEYCOMSTR="Creating development key $TARGET",
    )
    if not release_graph_wanted():
        return
    from sparkflash.manifest import MANIFEST_NAME, SIGNATURE_NAME

    manifest_action = Action(_build_manifest, "$SPARKFLASH_MANIFESTCOMSTR",
                             varlist=["SPARKFLASH_STRICT_SECTORS", "SPARKFLASH_META"])
    sign_action = Action(_sign, "$SPARKFLASH_SIGNCOMSTR")
    key_action = Action(_dev_key, "$SPARKFLASH_KEYCOMSTR")
    if "SparkflashManifest" not in env["BUILDERS"]:
        env["BUILDERS"]["SparkflashManifest"] = Builder(action=manifest_action)
        env["BUILDERS"]["SparkflashSign"] = Builder(action=sign_action)

    dist = env.Dir(env["SPARKFLASH_DIST"]).Dir("dist")
    yaml_node = env.File(env["SPARKFLASH_MANIFEST"])
    sources = [yaml_node]
    if env.get("SPARKFLASH_FIRMWARE_BIN") and not _cleaning_release_only():
        sources.append(env.File(env["SPARKFLASH_FIRMWARE_BIN"]))
    inputs = sources + _release_inputs(env, yaml_node)
    manifest = env.SparkflashManifest(dist.File(MANIFEST_NAME), inputs)
    env.Depends(manifest, [*_library_files(env), _content_node(env, inputs)])
    env.Clean(manifest, dist)  # the content-addressed blobs are side outputs

    key = env.File(env["SPARKFLASH_KEY"])
    if key.srcnode().abspath == env.File(DEFAULT_KEY).abspath:
        pub = key.dir.File(key.name.removesuffix(".pem") + ".pub.pem")
        env.Command([key, pub], [], key_action)
        env.Precious(key, pub)
        env.NoClean(key, pub)
    sig = env.SparkflashSign(dist.File(SIGNATURE_NAME), [manifest[0], key])

    env.Alias("manifest", manifest)
    env.Alias("sign", sig)


def exists(env: Any) -> bool:
    """The package is importable (it was, or this module would not have loaded)."""
    return True
