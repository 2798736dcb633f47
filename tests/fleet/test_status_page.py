"""The status page in a real browser (Debian's headless Chromium) against a real `cloud serve
--database` process, while the test advances a rollout in the fleet store as instances would."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
from fleet_services import Chromium, server_key

from sparkflash.fleet import Store, open_store
from sparkflash.fleet.instances import Presence
from sparkflash.fleet.lightcore import device_ids
from sparkflash.fleet.local_services import CloudInstance
from sparkflash.fleet.records import Phase, Target
from sparkflash.fleet.rollouts import Rollouts

PEM = "-----BEGIN PUBLIC KEY-----\nMIGf\n-----END PUBLIC KEY-----\n"
REF = "s3://demo/sparkflash/releases/example/2.0.0"


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[tuple[CloudInstance, Store]]:
    """One instance on a SQLite fleet database, and the test's own connection to that database."""
    key, _ = server_key(tmp_path)
    db = f"sqlite:{tmp_path / 'fleet.db'}"
    inst = CloudInstance("status-a", key, tmp_path / "devices", db, log_dir=tmp_path).start()
    store = open_store(db)
    try:
        yield inst, store
    finally:
        store.close()
        inst.stop()


def _get(url: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    req = Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_status_json_needs_the_token_and_the_page_holds_no_data(instance: tuple[CloudInstance, Store]) -> None:
    inst, store = instance
    store.put_device(device_ids(1, "5c")[0], PEM, generation="os")
    status, _, body = _get(inst.admin + "/status.json")
    assert status == 401 and b"bearer token" in body
    status, _, body = _get(inst.admin + "/status.json", "x" * 43)
    assert status == 401
    status, _, body = _get(inst.admin + "/status.json", inst.token)
    doc = json.loads(body)
    assert status == 200 and doc["device_count"] == 1 and doc["served_by"] == "status-a"
    status, headers, body = _get(inst.admin + "/status")  # public: the page itself, with strict headers
    assert status == 200 and headers["Content-Type"].startswith("text/html") and device_ids(1, "5c")[0].encode() not in body
    assert "script-src 'self'" in headers["Content-Security-Policy"] and headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer" and headers["X-Content-Type-Options"] == "nosniff"
    assert _get(inst.admin + "/status.js")[0] == 200 and _get(inst.admin + "/status/../v1/devices")[0] == 401
    assert _get(inst.admin + "/v1/devices")[0] == 401  # nothing else became public


def _wait(chrome: Chromium, js: str, timeout: float = 20.0) -> Any:
    return chrome.wait_for(js, timeout)


def test_the_status_page_shows_a_rollout_move_in_chromium(instance: tuple[CloudInstance, Store], tmp_path: Path,
                                                         tool: Callable[[str], str]) -> None:
    inst, store = instance
    devs = device_ids(12, "5b")
    for i, d in enumerate(devs):
        store.put_device(d, PEM, labels=("north",) if i % 2 else ("south",), capabilities=("save",) if i < 4 else (),
                         generation="ccl" if i < 4 else "os")
    store.set_verified_release(devs[0], "example", "1.0.0", "ab" * 32)
    edge = Presence(store, "edge-1")  # another instance holding the devices (as the store sees it)
    edge.apply({d: "ccl" if i < 4 else "os" for i, d in enumerate(devs)})
    ro = Rollouts(store)
    ro.create("web-2-0", REF, Target(), (Phase(25, 1.0), Phase(100, 0.9)))
    claims = store.claim("edge-1", limit=10, connected_only=False)
    assert len(claims) == 3  # phase 1: 25 % of 12
    for c in claims:
        store.save_progress("web-2-0", c.device_id, "web", acked=0, sector=0, total=65536)

    chrome = Chromium(tool("chromium")).start()
    try:
        chrome.navigate(f"{inst.admin}/status#token={inst.token}")
        rollout = 'document.querySelector(\'[data-rollout="web-2-0"]\')'
        acked = f"{rollout}?.querySelector('.bytes .acked')?.textContent"
        assert _wait(chrome, f"{acked} === '0' && {acked}")
        assert "token" not in chrome.evaluate("location.href")  # taken from the fragment, then removed
        assert chrome.evaluate(f"{rollout}.querySelector('tr[data-phase=\"1\"]').dataset.state") == "active"
        # the instance works on phase 1: progress moves, the page follows
        for c in claims:
            store.save_progress("web-2-0", c.device_id, "web", acked=32768, sector=0x7000, total=65536)
        assert _wait(chrome, f"{acked} === '98304'")
        row = f"document.querySelector('tr[data-device=\"{claims[0].device_id}\"]')"
        assert "32768" in _wait(chrome, f"{row}?.textContent.includes('claimed') && {row}.textContent")
        for c in claims:
            store.save_progress("web-2-0", c.device_id, "web", acked=65536, sector=0xF000, total=65536)
            assert ro.report("edge-1", "web-2-0", c.device_id, ok=True, detail={"status": "verified"})
        # phase 1 passed: phase 2's nine devices are now pending
        assert _wait(chrome, f"{rollout}?.querySelector('tr[data-phase=\"1\"]')?.dataset.state === 'passed'")
        assert chrome.evaluate(f"{rollout}.querySelector('tr[data-phase=\"2\"]').dataset.state") == "active"
        assert "pending 9" in chrome.evaluate(f"{rollout}.textContent")
        first = chrome.evaluate(f"document.querySelector('tr[data-device=\"{devs[0]}\"]').textContent")
        assert "ccl" in first and "save" in first and "example 1.0.0" in first and "edge-1" in first
        assert chrome.evaluate("document.querySelector('tr[data-instance=\"edge-1\"]').textContent").startswith("edge-1")
        shot = chrome.screenshot(tmp_path / "status-page.png")
    finally:
        chrome.stop()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    print(f"status page screenshot: {shot}")


def test_without_a_token_the_page_asks_for_one(instance: tuple[CloudInstance, Store], tool: Callable[[str], str]) -> None:
    inst, _ = instance
    chrome = Chromium(tool("chromium")).start()
    try:
        chrome.navigate(f"{inst.admin}/status")
        assert _wait(chrome, "!document.getElementById('login').hidden")
        assert chrome.evaluate("document.getElementById('content').hidden") is True
        chrome.navigate("about:blank")  # else a fragment-only change would not load the page again
        chrome.navigate(f"{inst.admin}/status#token=wrong-token-{'x' * 32}")
        assert _wait(chrome, "document.getElementById('error').textContent.includes('refused')")
        assert chrome.evaluate("sessionStorage.getItem('sparkflash-token')") is None
    finally:
        chrome.stop()


def test_the_status_document_on_both_databases(make_store: Callable[..., Store]) -> None:
    """What /status.json carries, from the store alone: phases with thresholds, summed progress,
    each device's transfer and release, instances by their lease."""
    from sparkflash.fleet.status import status_doc

    store = make_store()
    devs = device_ids(10, "5a")
    for i, d in enumerate(devs):
        store.put_device(d, PEM, capabilities=("save",) if i == 0 else (), generation="ccl" if i == 0 else None)
    store.set_verified_release(devs[1], "example", "1.0.0", "cd" * 32, now=500.0)
    Presence(store, "edge-2").apply(dict.fromkeys(devs[:4], "os"), now=1000.0)
    ro = Rollouts(store)
    ro.create("web-3-0", REF, Target(), (Phase(20, 1.0), Phase(100, 0.5)))
    first = store.claim("edge-2", limit=10, connected_only=False)
    assert len(first) == 2
    store.save_progress("web-3-0", first[0].device_id, "web", acked=4096, sector=0, total=8192)
    store.save_progress("web-3-0", first[0].device_id, "font", acked=0, sector=0, total=65536)
    doc = status_doc(store, now=1010.0, lease_s=30.0, device_limit=5)
    r = doc["rollouts"][0]
    assert (r["id"], r["state"], r["phase"], r["devices"]) == ("web-3-0", "running", 1, 10)
    assert r["bytes"] == {"acked": 4096, "total": 8192 + 65536} and r["counts"] == {"claimed": 2, "waiting": 8}
    assert [(p["percent"], p["threshold"], p["devices"], p["failure_budget"], p["state"]) for p in r["phases"]] == [
        (20.0, 1.0, 2, 0, "active"), (100.0, 0.5, 8, 4, "waiting")]
    assert doc["device_count"] == 10 and len(doc["devices"]) == 5 and doc["connected_count"] == 4
    by_id = {d["id"]: d for d in doc["devices"]}
    assert by_id[devs[1]]["release"] == {"name": "example", "version": "1.0.0", "sha256": "cd" * 32, "verified_at": 500.0}
    assert by_id[devs[0]]["capabilities"] == ["save"] and by_id[devs[0]]["instance"] == "edge-2"
    mine = by_id.get(first[0].device_id) or status_doc(store, now=1010.0)["devices"][devs.index(first[0].device_id)]
    assert mine["transfer"] == {"rollout": "web-3-0", "status": "claimed", "attempts": 1, "acked": 4096, "total": 73728}
    assert doc["instances"] == [{"name": "edge-2", "devices": 4, "heartbeat_at": 1000.0, "alive": True}]
    later = status_doc(store, now=1031.0, lease_s=30.0)  # the lease ran out: not shown as connected any more
    assert later["connected_count"] == 0 and later["instances"][0]["alive"] is False
    assert [e["kind"] for e in doc["events"]] == ["rollout-created"]


def test_the_status_page_follows_a_real_server_rollout_in_chromium(tmp_path: Path, tool: Callable[[str], str],
                                                                   make_release: Any) -> None:
    """No store-level stand-in: a real `cloud serve` deploys a 64 KiB file to a light device (each chunk
    takes 20 ms to program) and the page, loaded before, shows the server's own stored progress grow
    and then the deployment end."""
    import asyncio
    import base64
    import os

    from fleet_services import LoopThread

    from sparkflash.cloud.registry import DeviceRegistry
    from sparkflash.fleet.lightcore import LightDevice, LightOptions, public_pem
    from sparkflash.protocols.core_keys import generate_device_key

    key, pub = server_key(tmp_path)
    devkey = generate_device_key()
    dev = LightDevice(device_ids(1, "5d")[0], devkey, pub, ("127.0.0.1", 0),
                      LightOptions(dialect="ccl", save_begin=True, agent=True, reconnect_s=0.1, write_s=0.02))
    DeviceRegistry(tmp_path / "devices").register(dev.id, public_pem(devkey), {"save_begin": True})
    data = os.urandom(64 * 1024)
    rel = make_release(tmp_path / "rel", [("big", 0x100000, data)])
    inst = CloudInstance("status-r", key, tmp_path / "devices", f"sqlite:{tmp_path / 'fleet.db'}", log_dir=tmp_path).start()
    dev.address = ("127.0.0.1", inst.port)
    lt = LoopThread()
    task: list[Any] = []
    chrome = Chromium(tool("chromium")).start()
    try:
        async def up() -> None:
            task.append(asyncio.ensure_future(dev.run()))
            await asyncio.wait_for(dev.connected.wait(), 20)

        lt.run(up())
        chrome.navigate(f"{inst.admin}/status#token={inst.token}")
        assert _wait(chrome, f"!!document.querySelector('tr[data-device=\"{dev.id}\"]')")

        def call(method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
            req = Request(inst.admin + path, method=method, data=json.dumps(body).encode(),
                          headers={"Authorization": f"Bearer {inst.token}", "Content-Type": "application/json"})
            with urlopen(req, timeout=30) as r:
                doc: dict[str, Any] = json.load(r)
            return doc

        call("PUT", f"/v1/blobs/{rel.manifest.regions[0].sha256}", {"data": base64.b64encode(data).decode()})
        rid = call("POST", "/v1/deployments", {"manifest_json": rel.raw.decode(), "devices": [dev.id]})["id"]
        acked = f"Number(document.querySelector('[data-rollout=\"{rid}\"] .bytes .acked')?.textContent || -1)"
        first = _wait(chrome, f"{acked} > 0 && {acked} < {len(data)} && {acked}", 30)
        assert _wait(chrome, f"{acked} > {first} && {acked}", 30) > first  # it moves while the server writes
        state = f"document.querySelector('[data-rollout=\"{rid}\"]')?.dataset.state === 'done'"
        assert _wait(chrome, state, 60)
        assert dev.flash.read(0x100000, len(data)) == data
        shot = chrome.screenshot(tmp_path / "status-page-real.png")
    finally:
        chrome.stop()
        dev.stop()
        if task:
            lt.run(asyncio.wait(task, timeout=10))
        lt.close()
        inst.stop()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
