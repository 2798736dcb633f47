"""Release inputs are confined and bounded, and hostile inputs end in one clear line (issue #16, point 4).

A release YAML may come from a pull request: its `file:`/`dir:` sources must not read
outside the project, special files must not hang or be packed, sizes are checked before a
byte is read, and YAML integers follow YAML 1.2 (decimal and 0x only).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from sparkflash.deploy.run import Ledger
from sparkflash.errors import InputError
from sparkflash.manifest.build import build_release, plan_release
from sparkflash.manifest.keys import TrustStore
from sparkflash.manifest.load import loads_yaml
from sparkflash.manifest.pack import pack_dir, unpack

HEAD = """
name: tiny
version: "1.0.0"
board: spark-core
regions:
"""


def _region(source: str, address: str = "0x80000", name: str = "a") -> str:
    return f"  - name: {name}\n    memory: external\n    address: {address}\n    source: {source}\n"


def _yaml(tmp_path: Path, body: str, name: str = "release.yaml") -> Path:
    proj = tmp_path / "proj"
    proj.mkdir(exist_ok=True)
    p = proj / name
    p.write_text(textwrap.dedent(HEAD).lstrip() + body)
    return p


def _cli(*args: str, timeout: float = 60, mem: int | None = None) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if mem is not None:
            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))

    return subprocess.run([sys.executable, "-m", "sparkflash", *args], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limit, env=os.environ, check=False)


def _one_clear_line(r: subprocess.CompletedProcess[str], code: int) -> str:
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("sparkflash: error: "), r.stderr[-2000:]
    assert r.returncode == code, (r.returncode, r.stderr)
    return lines[0]


# -- confinement ------------------------------------------------------------------------

def test_absolute_path_outside_the_project_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.bin").write_bytes(b"AWS_SECRET_ACCESS_KEY=x" * 10)
    y = _yaml(tmp_path, _region(f"{{file: {tmp_path / 'secret.bin'}}}"))
    with pytest.raises(InputError, match="outside the release's project directory"):
        plan_release(y)


def test_dot_dot_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.bin").write_bytes(b"s" * 100)
    with pytest.raises(InputError, match="outside the release's project directory"):
        plan_release(_yaml(tmp_path, _region("{file: ../secret.bin}")))


def test_a_symlink_pointing_outside_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.bin").write_bytes(b"s" * 100)
    y = _yaml(tmp_path, _region("{file: inside.bin}"))
    (y.parent / "inside.bin").symlink_to(tmp_path / "secret.bin")
    with pytest.raises(InputError, match="outside the release's project directory"):
        plan_release(y)


def test_proc_self_environ_is_never_packed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-not-a-real-secret")
    for src in ("{file: /proc/self/environ}", "{dir: /proc/self}"):
        y = _yaml(tmp_path, _region(src))
        with pytest.raises(InputError) as e:
            build_release(y, tmp_path / "out")
        assert "wJalrXUtnFEMI" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_a_directory_allowed_on_the_command_line_may_hold_sources(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "font.bin").write_bytes(b"f" * 100)
    y = _yaml(tmp_path, _region("{file: ../shared/font.bin}"))
    with pytest.raises(InputError):
        plan_release(y)
    assert plan_release(y, allow_dirs=(shared,)).manifest.regions[0].size == 100
    r = _cli("manifest", "build", str(y), "--out", str(tmp_path / "out"), "--allow-dir", str(shared))
    assert r.returncode == 0, r.stderr


def test_an_unreadable_subdirectory_of_a_dir_source_fails(tmp_path: Path) -> None:
    """Run as an unprivileged user when we are root (root reads any directory), so the
    permission really bites; the tree then lives in a world-traversable temp dir."""
    root = Path(tempfile.mkdtemp(prefix="sparkflash-unreadable-")) if os.geteuid() == 0 else tmp_path
    try:
        root.chmod(0o755)
        y = _yaml(root, _region("{dir: web}"))
        web = y.parent / "web"
        (web / "private").mkdir(parents=True)
        (web / "index.html").write_text("hi")
        (web / "private" / "key.txt").write_text("k")
        (web / "private").chmod(0o000)
        if os.geteuid() == 0:
            r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                sys.executable, "-m", "sparkflash", "manifest", "build", str(y), "--out",
                                str(root / "out")], capture_output=True, text=True, timeout=60, env=os.environ,
                               check=False)
            line = _one_clear_line(r, 2)
        else:
            with pytest.raises(InputError) as e:
                plan_release(y)
            line = str(e.value)
        assert "private" in line and "never silently left out" in line
    finally:
        for p in root.rglob("private"):
            p.chmod(0o755)
        if root != tmp_path:
            shutil.rmtree(root)


def test_special_files_are_refused_without_hanging(tmp_path: Path) -> None:
    proj = _yaml(tmp_path, "").parent
    os.mkfifo(proj / "fifo.bin")
    for src in ("{file: fifo.bin}", "{file: /dev/zero}"):
        with pytest.raises(InputError, match="not a regular file|special file system|outside"):
            plan_release(_yaml(tmp_path, _region(src)))
    (proj / "web").mkdir()
    os.mkfifo(proj / "web" / "pipe")
    with pytest.raises(InputError, match="not a regular file"):
        pack_dir(proj / "web")


def test_a_fifo_as_the_yaml_path_is_one_clear_error(tmp_path: Path) -> None:
    fifo = tmp_path / "release.yaml"
    os.mkfifo(fifo)
    line = _one_clear_line(_cli("manifest", "build", str(fifo), "--out", str(tmp_path / "out"), timeout=30), 2)
    assert "not a regular file" in line


def test_a_huge_sparse_blob_is_refused_before_it_is_read(tmp_path: Path) -> None:
    y = _yaml(tmp_path, _region("{file: huge.bin}"))
    with open(y.parent / "huge.bin", "wb") as f:
        f.truncate(3 << 30)  # 3 GiB, sparse: costs nothing on disk
    line = _one_clear_line(_cli("manifest", "build", str(y), "--out", str(tmp_path / "out"), mem=1 << 30), 2)
    assert "nothing was read" in line and str(3 << 30) in line


def test_dir_sources_pack_the_same_as_before(tmp_path: Path) -> None:
    web = tmp_path / "web"
    (web / "css").mkdir(parents=True)
    (web / "index.html").write_text("<p>")
    (web / "css" / "a.css").write_text("p{}")
    assert unpack(pack_dir(web)) == {"css/a.css": b"p{}", "index.html": b"<p>"}


# -- YAML 1.2 integers ------------------------------------------------------------------

@pytest.mark.parametrize("text", ["8:44:00:00", "010", "1_000", "0o17", "0b101", "9" * 5000])
def test_yaml_integers_are_decimal_or_hex_only(tmp_path: Path, text: str) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "a.bin").write_bytes(b"a" * 16)
    y = _yaml(tmp_path, _region("{file: a.bin}", address=text))
    with pytest.raises(InputError, match=r"release\.yaml:\d+: .*(integer|address)"):
        plan_release(y)


@pytest.mark.parametrize(("text", "value"), [("0x80000", 0x80000), ("524288", 524288)])
def test_yaml_decimal_and_hex_still_read(text: str, value: int) -> None:
    assert loads_yaml(f"a: {text}\n", "x.yaml")["a"] == value


def test_yaml_11_booleans_are_strings() -> None:
    d = loads_yaml("a: yes\nb: off\nc: true\n", "x.yaml")
    assert (d["a"], d["b"], d["c"]) == ("yes", "off", True)


def test_a_5000_digit_address_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(b"x" * 16)
    r = _cli("flash", str(tmp_path / "f.bin"), "--address", "9" * 5000, "--via", "dfu", "--device", "virtual:/nonexistent")
    assert "Traceback" not in r.stderr and r.returncode == 2, r.stderr[-1000:]


# -- other tracebacks the issue found ---------------------------------------------------

@pytest.mark.parametrize("board", [
    "name: custom\nmemories: [1, 2]\n", "- just\n- a list\n", "name: c\nmemories: {x: {base: 0, size: 1}}\n",
    ("name: c\nmemories: {x: {base: 0, size: 0x100000, sector_size: 0}}\nram: {base: 0, size: 1}\n"
     "firmware: {memory: x, address: 0, max_size: 1}\n"), ": : :\n",
])
def test_a_malformed_board_yaml_is_one_clear_error(tmp_path: Path, board: str) -> None:
    y = _yaml(tmp_path, _region("{file: a.bin}").replace("external", "x"))
    y.write_text(y.read_text().replace("spark-core", "custom"))
    (y.parent / "a.bin").write_bytes(b"a" * 16)
    (y.parent / "boards").mkdir()
    (y.parent / "boards" / "custom.yaml").write_text(board)
    line = _one_clear_line(_cli("manifest", "build", str(y), "--out", str(tmp_path / "out")), 2)
    assert "custom" in line


def test_a_corrupt_ledger_is_one_clear_error(tmp_path: Path) -> None:
    dev = "0123456789abcdef01234567"
    (tmp_path / "devices").mkdir()
    for junk in (b"{not json", b"[1, 2]", b'{"rel": 7}', b"\xff\xfe"):
        (tmp_path / "devices" / f"{dev}.json").write_bytes(junk)
        with pytest.raises(InputError, match="deploy ledger"):
            Ledger(tmp_path).refuse_downgrade(dev, "rel", "1.0.0")


def test_a_directory_named_like_a_key_in_the_trust_dir_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "trust" / "x.pub.pem").mkdir(parents=True)
    with pytest.raises(InputError, match="x.pub.pem: not a regular file"):
        TrustStore.from_paths([tmp_path / "trust"])


def test_s3_local_with_an_invalid_bucket_name_is_one_clear_error() -> None:
    line = _one_clear_line(_cli("s3-local", "--port", "0", "--bucket", "b", timeout=60), 2)
    assert "bucket 'b'" in line


def test_ten_thousand_regions_print_a_bounded_summary(tmp_path: Path) -> None:
    proj = _yaml(tmp_path, "").parent
    (proj / "t.bin").write_bytes(b"t" * 4)
    body = "".join(_region("{file: t.bin}", address=hex(0x80000 + 0x100 * i), name=f"r{i}") for i in range(3000))
    plan = plan_release(_yaml(tmp_path, body))
    assert 1 <= len(plan.warnings) <= 21
    assert sum(len(w) for w in plan.warnings) < 20_000
    assert "more shared sectors not shown" in plan.warnings[-1]


MakeYaml = Callable[[str], Path]


def test_a_huge_sparse_blob_in_a_release_dir_is_refused_before_it_is_read(tmp_path: Path) -> None:
    from sparkflash.manifest.keys import generate_key

    proj = _yaml(tmp_path, _region("{file: a.bin}")).parent
    (proj / "a.bin").write_bytes(b"a" * 4096)
    generate_key(tmp_path / "k.pem")
    r = _cli("manifest", "build", str(proj / "release.yaml"), "--out", str(tmp_path / "dist"), "--key",
             str(tmp_path / "k.pem"))
    assert r.returncode == 0, r.stderr
    (blob,) = (tmp_path / "dist" / "blobs" / "sha256").iterdir()
    with open(blob, "r+b") as f:
        f.truncate(3 << 30)
    line = _one_clear_line(_cli("manifest", "verify", str(tmp_path / "dist"), "--trust", str(tmp_path / "k.pub.pem"),
                                mem=1 << 30), 3)
    assert f"{3 << 30} bytes, the manifest says 4096" in line
