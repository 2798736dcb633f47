"""The campaign's S3 stop lands on a request in flight (issue #16: faults that land).

tools/campaign_s3_server.py is `sparkflash s3-local` that dies at its Nth request: before
the reply, or halfway through the body it receives (PUT) or sends (GET). A real boto3
client talks to it; what it acknowledged before dying is still there after a restart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tools" / "campaign_s3_server.py"


def _start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    p = subprocess.Popen([sys.executable, str(SERVER), "--data", str(tmp_path / "data"), "--bucket", "bkt",
                          "--report", str(tmp_path / "requests.jsonl"), *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line, p.communicate(timeout=10)[1]
    return p, json.loads(line)["endpoint"]


def _client(endpoint: str) -> Any:
    from sparkflash.publish.store import ClientOptions, make_client

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    client, _ = make_client(ClientOptions(endpoint_url=endpoint))
    return client


def _report(tmp_path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in (tmp_path / "requests.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("mid", "phase"), [(False, "before the reply"), (True, "reply body, 5000 of 10000 bytes sent")])
def test_the_server_dies_at_the_nth_request_and_says_so(tmp_path: Path, mid: bool, phase: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    p, endpoint = _start(tmp_path, "--stop-at", "2", *(["--mid-body"] if mid else []))
    try:
        client = _client(endpoint)
        client.put_object(Bucket="bkt", Key="k", Body=b"x" * 10_000)  # request 1: acknowledged
        with pytest.raises((BotoCoreError, ClientError)):
            client.get_object(Bucket="bkt", Key="k")["Body"].read()  # request 2: the server dies in it
        assert p.wait(10) == 137  # os._exit: no reply, no cleanup, as SIGKILL
    finally:
        p.kill()
        p.communicate()
    rep = _report(tmp_path)
    assert [r.get("n") for r in rep[:2]] == [1, 2]
    assert rep[-1] == {"fired": 2, "method": "GET", "path": "/bkt/k", "phase": phase}
    # what it acknowledged survives: a restart on the same data serves the object
    p, endpoint = _start(tmp_path)
    try:
        assert _client(endpoint).get_object(Bucket="bkt", Key="k")["Body"].read() == b"x" * 10_000
        assert not any("fired" in r for r in _report(tmp_path))
    finally:
        p.terminate()
        p.communicate(timeout=10)


def test_a_put_cut_halfway_through_its_body_stores_nothing(tmp_path: Path) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    p, endpoint = _start(tmp_path, "--stop-at", "1", "--mid-body")
    try:
        with pytest.raises((BotoCoreError, ClientError)):
            _client(endpoint).put_object(Bucket="bkt", Key="k", Body=b"y" * 10_000)
        assert p.wait(10) == 137
    finally:
        p.kill()
        p.communicate()
    fired = _report(tmp_path)[-1]
    assert fired["fired"] == 1 and fired["method"] == "PUT" and "request body" in str(fired["phase"])
    assert not (tmp_path / "data" / "bkt" / "k").exists()
