"""The wheel is the product: built, installed into a fresh venv outside the repository, it
builds, signs, publishes and deploys the example from a user's own two-line SConstruct.

Offline by design: the wheel is built with --no-build-isolation (setuptools comes from the
test extra), installed with --no-deps, and the fresh venv reaches the dependencies through
one .pth line naming this venv's site-packages. A .pth line adds a directory without
running that directory's own .pth files, so this checkout's editable install stays out:
the test asserts that `sparkflash` is imported from the fresh venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
USER_SCONSTRUCT = """\
import sparkflash.scons
env = Environment(tools=["sparkflash_all"], toolpath=[sparkflash.scons.toolpath()])
"""


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(cmd)} exited {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """(venv, environment): the wheel built from a copy of the sources, in a fresh venv."""
    top = tmp_path_factory.mktemp("wheel")
    src = top / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "site_scons" / "sparkflash", src / "site_scons" / "sparkflash",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "-q", "--no-build-isolation", "--no-deps", "--no-index", "-w", str(top / "dist"), str(src)], top, env)
    wheels = list((top / "dist").glob("sparkflash-*.whl"))
    assert len(wheels) == 1, wheels
    venv = top / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], top, env)
    py = venv / "bin" / "python"
    _run([*pip, "--python", str(py), "install", "-q", "--no-deps", "--no-index", str(wheels[0])], top, env)
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], top, env).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_sparkflash_test_deps.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    return venv, env


def test_wheel_holds_the_scons_tools_board_data_and_licence(installed: tuple[Path, dict[str, str]]) -> None:
    venv, env = installed
    out = _run([str(venv / "bin" / "python"), "-c",
                "import json, sparkflash, sparkflash.scons, importlib.metadata as md; "
                "print(json.dumps([sparkflash.__file__, sparkflash.scons.toolpath(), "
                "md.metadata('sparkflash')['License-Expression'], md.metadata('sparkflash').get_all('Project-URL')]))"],
               venv, env).stdout
    pkg, toolpath, licence, _ = json.loads(out)
    assert Path(pkg).is_relative_to(venv), f"imported {pkg}, not the wheel's copy"
    tools = {p.stem for p in Path(toolpath).glob("*.py")}
    assert {"arm_gcc", "spark_core", "sparkflash_release", "sparkflash_deploy", "sparkflash_all"} <= tools
    assert (Path(pkg).parent / "boards" / "spark-core.yaml").is_file()
    assert licence == "MIT"


@pytest.fixture
def servers(installed: tuple[Path, dict[str, str]], tmp_path: Path) -> Iterator[dict[str, str]]:
    """`sparkflash s3-local` and `sparkflash virtual-core`, both run from the wheel's console script."""
    venv, env = installed
    sf = str(venv / "bin" / "sparkflash")
    procs, info = [], {}
    try:
        for key, cmd in (("s3", [sf, "s3-local", "--port", "0", "--bucket", "demo", "--json"]),
                         ("core", [sf, "virtual-core", "--state", str(tmp_path / "core"), "--endpoints", "dfu",
                                   "--no-dfu-poll", "--json"])):
            log = tmp_path / f"{key}.log"
            with log.open("w") as err:
                p = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
            procs.append(p)
            assert p.stdout is not None
            line = p.stdout.readline()
            assert line, f"{key} did not start: {log.read_text()}"
            info[key] = line
        yield {"endpoint": json.loads(info["s3"])["endpoint"], "device": json.loads(info["core"])["dfu"]}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stdout is not None:
                p.stdout.close()


def test_user_sconstruct_builds_signs_publishes_and_deploys(installed: tuple[Path, dict[str, str]], tmp_path: Path,
                                                            servers: dict[str, str], tool: Callable[[str], str]) -> None:
    tool("arm-none-eabi-gcc")
    venv, env = installed
    proj = tmp_path / "user-project"
    shutil.copytree(ROOT / "examples", proj / "examples")
    (proj / "manifests").mkdir()
    shutil.copy2(ROOT / "manifests" / "example.yaml", proj / "manifests" / "example.yaml")
    shutil.copytree(ROOT / "manifests" / "example", proj / "manifests" / "example")
    (proj / "SConstruct").write_text(USER_SCONSTRUCT)
    env = {**env, "SPARKFLASH_HOME": str(tmp_path / "home")}
    py = str(venv / "bin" / "python")
    _run([py, "-m", "SCons", "-Q", "-j2", "sign"], proj, env)
    dist = proj / "build" / "release" / "dist"
    assert (dist / "manifest.json").is_file() and (dist / "manifest.json.sig").is_file()
    out = _run([py, "-m", "SCons", "-Q", "release", "BUCKET=demo", "PREFIX=user", "CHANNEL=stable",
                f"ENDPOINT={servers['endpoint']}"], proj, env).stdout
    summary = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
    assert summary["url"] == "s3://demo/user/releases/example/1.0.0" and summary["channel"]["version"] == "1.0.0"
    res = _run([str(venv / "bin" / "sparkflash"), "deploy", "s3://demo/user/example", "--channel", "stable",
                "--trust", str(proj / "build" / "keys" / "dev.pub.pem"), "--via", "dfu", "--device", servers["device"],
                "--endpoint-url", servers["endpoint"], "--json"], proj, env)
    result = json.loads(res.stdout.splitlines()[-1])
    assert result["event"] == "result" and result["ok"] is True, result
    regions = result["deployments"][0]["regions"]
    assert {r["region"] for r in regions} == {"firmware", "font", "web"}
    assert {r["status"] for r in regions} == {"verified"}
