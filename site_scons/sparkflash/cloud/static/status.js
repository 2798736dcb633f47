// The fleet status page: polls /status.json once a second and redraws. No framework, no build
// step. Everything from the server is put in the page as text (textContent), never as HTML.
"use strict";

const POLL_MS = 1000;
let token = null;

function takeToken() {
  const m = /(?:^|&)token=([^&]+)/.exec(location.hash.slice(1));
  if (m) {
    sessionStorage.setItem("sparkflash-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname); // the token leaves the address bar and history
  }
  return sessionStorage.getItem("sparkflash-token");
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function when(t) {
  if (t === null || t === undefined) return "–";
  return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function pct(x) { return (Math.round(x * 1000) / 10) + " %"; }

function state(s) { return el("span", {"class": "state state-" + s}, s); }

function bar(acked, total, attrs) {
  return el("span", attrs, el("progress", {max: String(Math.max(total, 1)), value: String(acked)}), " ",
            el("span", {"class": "acked"}, String(acked)), " / ", el("span", {"class": "total"}, String(total)), " bytes");
}

function counts(c) {
  return Object.keys(c).sort().map((k) => k + " " + c[k]).join(", ") || "–";
}

function rollout(r) {
  const phases = el("table", {"class": "phases"},
    el("thead", null, el("tr", null, el("th", null, "phase"), el("th", null, "reaches"), el("th", null, "threshold"),
      el("th", null, "devices"), el("th", null, "may fail"), el("th", null, "status counts"), el("th", null, "state"))));
  const body = el("tbody");
  for (const p of r.phases) {
    body.append(el("tr", {"data-phase": String(p.phase), "data-state": p.state},
      el("td", null, p.phase), el("td", null, p.percent + " %"), el("td", null, pct(p.threshold) + " success"),
      el("td", null, p.devices), el("td", null, p.failure_budget), el("td", null, counts(p.counts)),
      el("td", null, state(p.state))));
  }
  phases.append(body);
  return el("div", {"class": "rollout", "data-rollout": r.id, "data-state": r.state},
    el("h3", null, el("span", {"class": "id"}, r.id), " ", state(r.state), " phase ", r.phase, " of ", r.phases.length),
    el("div", null, "release ", el("code", null, r.release), " · ", r.devices, " devices · ", counts(r.counts)),
    r.reason ? el("div", {"class": "reason"}, r.reason) : null,
    el("div", null, "transfers started: ", bar(r.bytes.acked, r.bytes.total, {"class": "bytes"}), " acknowledged"),
    phases);
}

function device(d) {
  const rel = d.release ? el("span", null, d.release.name + " " + d.release.version + " ",
    el("code", {title: d.release.sha256}, d.release.sha256.slice(0, 12) + "…"), " at " + when(d.release.verified_at)) : "–";
  const t = d.transfer;
  const transfer = t ? el("span", null, el("span", {"class": "id"}, t.rollout), " ", state(t.status), " ",
    t.total ? bar(t.acked, t.total, {"class": "bytes"}) : null) : "–";
  return el("tr", {"data-device": d.id, "data-connected": String(d.connected)},
    el("td", {"class": "id"}, d.id), el("td", null, d.generation || "–"), el("td", null, d.capabilities.join(", ") || "–"),
    el("td", null, d.labels.join(", ") || "–"), el("td", null, d.connected ? d.instance : "not connected"),
    el("td", null, rel), el("td", null, transfer));
}

function render(doc) {
  document.getElementById("summary").textContent =
    doc.device_count + " devices, " + doc.connected_count + " connected, " + doc.rollouts.length + " rollouts · served by " +
    (doc.served_by || "?") + " · " + when(doc.generated_at);
  document.getElementById("rollouts").replaceChildren(...(doc.rollouts.length ? doc.rollouts.map(rollout)
    : [el("p", null, "no rollouts")]));
  document.querySelector("#instances tbody").replaceChildren(...doc.instances.map((i) =>
    el("tr", {"data-instance": i.name}, el("td", {"class": "id"}, i.name), el("td", null, i.devices),
      el("td", null, when(i.heartbeat_at)), el("td", null, state(i.alive ? "up" : "down")))));
  document.getElementById("device-count").textContent = doc.devices.length < doc.device_count
    ? "(first " + doc.devices.length + " of " + doc.device_count + ")" : "(" + doc.device_count + ")";
  document.querySelector("#devices tbody").replaceChildren(...doc.devices.map(device));
  document.getElementById("events").replaceChildren(...doc.events.slice().reverse().map((e) =>
    el("li", null, when(e.time) + " " + e.kind + (e.rollout ? " " + e.rollout : "") + (e.device ? " " + e.device : "") +
      (Object.keys(e.detail).length ? " " + JSON.stringify(e.detail) : ""))));
  document.getElementById("content").hidden = false;
  document.body.dataset.updated = String(doc.generated_at);
}

function problem(text) {
  const e = document.getElementById("error");
  e.textContent = text;
  e.hidden = !text;
}

async function poll() {
  if (!token) {
    document.getElementById("login").hidden = false;
    document.getElementById("summary").textContent = "the admin token is needed to read the status";
    return;
  }
  try {
    const r = await fetch("/status.json", {headers: {Authorization: "Bearer " + token}, cache: "no-store"});
    if (r.status === 401) {
      sessionStorage.removeItem("sparkflash-token");
      token = null;
      problem("the server refused the token");
      return poll();
    }
    const doc = await r.json();
    if (!r.ok) throw new Error(doc.error || r.statusText);
    problem("");
    render(doc);
  } catch (err) {
    problem("cannot read the status: " + err.message);
  }
  setTimeout(poll, POLL_MS);
}

document.getElementById("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = document.getElementById("token").value.trim();
  if (token) {
    sessionStorage.setItem("sparkflash-token", token);
    document.getElementById("login").hidden = true;
    poll();
  }
});

token = takeToken();
poll();
