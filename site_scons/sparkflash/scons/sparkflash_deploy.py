"""SCons tool: the `publish`, `release`, `flash-ext` and `flash` targets over the signed release.

They come after `sign` (sparkflash/scons/sparkflash_release.py) in the graph, so each one builds the
firmware, lays out and signs the release first when anything changed. The work itself is
the package's: `publish` and `release` call sparkflash.publish.upload.publish in-process;
`flash-ext` and `flash` run `python -m sparkflash deploy` (the same code, output and exit
codes as the CLI). All four always run: their effect is outside the build tree.

    scons publish BUCKET=b [PREFIX=p] [CHANNEL=stable] [ENDPOINT=http://127.0.0.1:5000]
    scons release BUCKET=b ...      build + manifest + sign + publish, then one JSON summary line
    scons flash-ext VIA=dfu|serial|ota [PORT=/dev/ttyACM0] [DEVICE=virtual:DIR|1d50:607f|ID] [CLOUD=url]
    scons flash [DEVICE=...]        the firmware by DFU, then leave DFU mode
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import SCons.Errors
import SCons.Script
from SCons.Script import ARGUMENTS, Action

from sparkflash.scons.errors import stop_on_error

VIAS = ("dfu", "serial", "ota")
# The `scons NAME=value` variables this tool reads (KEY is shared with sparkflash_release).
ARGUMENT_NAMES = ("BUCKET", "PREFIX", "CHANNEL", "ENDPOINT", "CREATE_BUCKET", "VIA", "PORT", "DEVICE", "CLOUD", "KEY")


def _public_key(env: Any) -> Path:
    key = Path(env.File(env["SPARKFLASH_KEY"]).abspath)
    return key.with_name(key.name.removesuffix(".pem") + ".pub.pem")


def _s3_url(env: Any) -> str:
    bucket = env["SPARKFLASH_BUCKET"]
    if not bucket:
        raise SCons.Errors.StopError("publish: pass BUCKET=name (and PREFIX=path, ENDPOINT=url for a local server)")
    prefix = str(env["SPARKFLASH_PREFIX"]).strip("/")
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


def _publish(env: Any, summary: bool) -> Any:
    def action(target: list[Any], source: list[Any], env: Any) -> int:
        from sparkflash.manifest.keys import load_signer
        from sparkflash.publish.store import ClientOptions
        from sparkflash.publish.upload import PublishOptions, publish

        dist = Path(source[0].abspath).parent
        with stop_on_error():
            report = publish(dist, _s3_url(env), signer=load_signer(Path(env.File(env["SPARKFLASH_KEY"]).abspath)),
                             channel=env["SPARKFLASH_CHANNEL"] or None,
                             client_options=ClientOptions(endpoint_url=env["SPARKFLASH_ENDPOINT"] or None),
                             options=PublishOptions(create_bucket=bool(env["SPARKFLASH_CREATE_BUCKET"])))
        doc = report.to_json()
        if summary:
            from sparkflash.manifest import Manifest

            m = Manifest.from_bytes(Path(source[0].abspath).read_bytes(), str(source[0]))
            print(json.dumps({"name": m.name, "version": m.version, "url": report.url,
                              "manifest_sha256": report.manifest_sha256, "manifest": report.manifest_status,
                              "digests": {r.name: r.sha256 for r in m.regions},
                              "blobs_uploaded": doc["blobs_uploaded"], "bytes_uploaded": report.bytes_uploaded,
                              "channel": report.channel}, sort_keys=True), flush=True)
        else:
            print(f"published {report.url}: manifest {report.manifest_status}, "
                  f"{doc['blobs_uploaded']}/{len(report.blobs)} blobs uploaded ({report.bytes_uploaded} B)"
                  + (f", channel {report.channel['channel']} -> {report.channel['version']}" if report.channel else ""))
        return 0

    return Action(action, "Publishing ${SOURCE.dir} to s3://${SPARKFLASH_BUCKET}/${SPARKFLASH_PREFIX}")


def _deploy_cmd(env: Any, manifest: str, via: str, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "sparkflash", "deploy", manifest, "--via", via, "--trust", str(_public_key(env))]
    if env["SPARKFLASH_PORT"]:
        cmd += ["--port", env["SPARKFLASH_PORT"]]
    if env["SPARKFLASH_CLOUD"]:
        cmd += ["--cloud", env["SPARKFLASH_CLOUD"]]
    for d in str(env["SPARKFLASH_DEVICE"]).split(","):
        if d:
            cmd += ["--device", d]
    return cmd + extra


def _run(cmd: list[str]) -> int:
    print(" ".join(cmd), flush=True)
    rc = subprocess.call(cmd)
    if rc:
        raise SCons.Errors.StopError(f"`sparkflash deploy` failed with exit code {rc} (see above)")
    return 0


def _flash_ext(target: list[Any], source: list[Any], env: Any) -> int:
    via = env["SPARKFLASH_VIA"]
    if via not in VIAS:
        raise SCons.Errors.StopError(f"flash-ext: VIA={via!r}: choose one of {', '.join(VIAS)}")
    return _run(_deploy_cmd(env, source[0].abspath, via, ["--memory", "external"]))


def _flash(target: list[Any], source: list[Any], env: Any) -> int:
    from sparkflash.manifest import Manifest

    m = Manifest.from_bytes(Path(source[0].abspath).read_bytes(), str(source[0]))
    names = [r.name for r in m.regions if r.kind == "firmware"]
    if not names:
        raise SCons.Errors.StopError(f"flash: {source[0]} has no firmware region")
    regions = [a for n in names for a in ("--region", n)]
    return _run(_deploy_cmd(env, source[0].abspath, "dfu", regions + ["--leave"]))


HELP = ("\nDeploy targets (sparkflash_deploy):\n"
        "  publish    upload the signed release: BUCKET=b [PREFIX=p] [CHANNEL=stable] [ENDPOINT=url]\n"
        "             [CREATE_BUCKET=1]; AWS credentials/region from the standard AWS configuration\n"
        "  release    build + manifest + sign + publish, then one JSON summary line (for CI)\n"
        "  flash-ext  flash the external-flash regions: VIA=dfu|serial|ota [PORT=tty] [DEVICE=d,...]\n"
        "             [CLOUD=http://127.0.0.1:8683] (the admin API of `sparkflash cloud serve`)\n"
        "  flash      flash the firmware by DFU and leave DFU mode [DEVICE=...]\n")


def generate(env: Any) -> None:
    env.AppendUnique(SPARKFLASH_ARGUMENT_NAMES=list(ARGUMENT_NAMES))
    env.SetDefault(
        SPARKFLASH_BUCKET=ARGUMENTS.get("BUCKET", ""),
        SPARKFLASH_PREFIX=ARGUMENTS.get("PREFIX", ""),
        SPARKFLASH_CHANNEL=ARGUMENTS.get("CHANNEL", ""),
        SPARKFLASH_ENDPOINT=ARGUMENTS.get("ENDPOINT", ""),
        SPARKFLASH_CREATE_BUCKET=ARGUMENTS.get("CREATE_BUCKET", "0") not in ("0", "", "no", "false"),
        SPARKFLASH_VIA=ARGUMENTS.get("VIA", "dfu"),
        SPARKFLASH_PORT=ARGUMENTS.get("PORT", ""),
        SPARKFLASH_DEVICE=ARGUMENTS.get("DEVICE", ""),
        SPARKFLASH_CLOUD=ARGUMENTS.get("CLOUD", ""),
    )
    env.SetDefault(SPARKFLASH_KEY=ARGUMENTS.get("KEY", "#build/keys/dev.pem"),
                   SPARKFLASH_DIST=env.get("SPARKFLASH_VARIANT_DIR", env.Dir("#build/release")))
    env.Help(HELP, append=True)
    if not (SCons.Script.COMMAND_LINE_TARGETS or SCons.Script.GetOption("help")):
        return  # a plain `scons` builds Default() only: these aliases are out of its reach
    from sparkflash.manifest import MANIFEST_NAME, SIGNATURE_NAME

    dist = env.Dir(env["SPARKFLASH_DIST"]).Dir("dist")
    manifest, sig = dist.File(MANIFEST_NAME), dist.File(SIGNATURE_NAME)
    signed = [manifest, sig]  # sig is the `sign` target: firmware, manifest and signature are built first
    for name, action in (("publish", _publish(env, summary=False)), ("release", _publish(env, summary=True)),
                         ("flash-ext", Action(_flash_ext, "Flashing the external regions of $SOURCE via $SPARKFLASH_VIA")),
                         ("flash", Action(_flash, "Flashing the firmware of $SOURCE by DFU"))):
        alias = env.Alias(name, signed, action)
        env.AlwaysBuild(alias)


def exists(env: Any) -> bool:
    return True
