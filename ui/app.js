// orc's web UI: a read-only view of the cluster over Nomad's HTTP API (/v1/...).
// No build step and no dependencies: the orc binary embeds these files as they are.
// Each view re-renders when its data changes, using the API's blocking queries (index + wait),
// so the page stays live without polling hard.
"use strict";

const view = document.getElementById("view");
let current = null; // AbortController of the view on screen

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function short(id) {
  return esc(String(id ?? "").slice(0, 8));
}

function pill(status) {
  const s = String(status ?? "").toLowerCase();
  return `<span class="pill s-${esc(s)}">${esc(status || "-")}</span>`;
}

function ago(nanos) {
  if (!nanos) return "-";
  const secs = Math.max(0, Math.round((Date.now() - nanos / 1e6) / 1000));
  if (secs < 60) return `${secs}s ago`;
  if (secs < 3600) return `${Math.round(secs / 60)}m ago`;
  if (secs < 86400) return `${Math.round(secs / 3600)}h ago`;
  return `${Math.round(secs / 86400)}d ago`;
}

function table(headers, rows, empty) {
  if (!rows.length) return `<p class="muted">${esc(empty)}</p>`;
  return `<table><thead><tr>${headers.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`)
    .join("")}</tbody></table>`;
}

function kv(pairs) {
  return `<dl class="kv">${pairs.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join("")}</dl>`;
}

// GET a path; with index > 0 this is a blocking query that returns when the result changes.
async function get(path, index, signal) {
  const sep = path.includes("?") ? "&" : "?";
  const url = index ? `${path}${sep}index=${index}&wait=60s` : path;
  const res = await fetch(url, { signal, headers: { Accept: "application/json" } });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${res.status} ${text.trim() || res.statusText} (GET ${path})`);
  return { data: text ? JSON.parse(text) : null, index: Number(res.headers.get("X-Nomad-Index") || 0) };
}

// Renders `render(results)` now and again whenever the first path's index moves.
async function live(paths, render) {
  if (current) current.abort();
  const ctl = new AbortController();
  current = ctl;
  let index = 0;
  while (!ctl.signal.aborted) {
    try {
      const first = await get(paths[0], index, ctl.signal);
      const rest = await Promise.all(paths.slice(1).map((p) => get(p, 0, ctl.signal).then((r) => r.data, (e) => e)));
      if (ctl.signal.aborted) return;
      view.innerHTML = render(first.data, ...rest);
      index = first.index > index ? first.index : index + 0;
      if (!first.index) await sleep(2000, ctl.signal);
    } catch (err) {
      if (ctl.signal.aborted) return;
      view.innerHTML = `<p class="error">${esc(err.message)}</p>`;
      await sleep(3000, ctl.signal);
    }
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

function summaryOf(job) {
  const groups = (job.JobSummary && job.JobSummary.Summary) || {};
  const totals = { Running: 0, Queued: 0, Failed: 0, Complete: 0, Lost: 0 };
  for (const g of Object.values(groups)) for (const k of Object.keys(totals)) totals[k] += g[k] || 0;
  return Object.entries(totals).filter(([, n]) => n).map(([k, n]) => `${n} ${k.toLowerCase()}`).join(", ") || "-";
}

function allocRows(allocs) {
  return (allocs || []).map((a) => [
    `<a class="mono" href="#/allocation/${esc(a.ID)}">${short(a.ID)}</a>`,
    esc(a.Name),
    `<a class="mono" href="#/node/${esc(a.NodeID)}">${short(a.NodeID)}</a> ${esc(a.NodeName || "")}`,
    esc(a.JobVersion),
    pill(a.DesiredStatus),
    pill(a.ClientStatus),
    esc(ago(a.ModifyTime)),
  ]);
}

const ALLOC_HEADERS = ["ID", "Name", "Node", "Version", "Desired", "Status", "Modified"];

const routes = [
  [/^#\/jobs$/, () => live(["/v1/jobs"], (jobs) => `<h1>Jobs</h1>` + table(
    ["ID", "Type", "Priority", "Status", "Allocations", "Submitted"],
    (jobs || []).map((j) => [
      `<a href="#/job/${encodeURIComponent(j.ID)}">${esc(j.ID)}</a>`,
      esc(j.Type), esc(j.Priority), pill(j.Status), esc(summaryOf(j)), esc(ago(j.SubmitTime)),
    ]),
    "No jobs yet. Run one with: orc run examples/hello.job",
  ))],
  [/^#\/job\/(.+)$/, (id) => {
    const enc = encodeURIComponent(decodeURIComponent(id));
    return live([`/v1/job/${enc}/allocations?all=true`, `/v1/job/${enc}`], (allocs, job) => {
      if (job instanceof Error) return `<p class="error">${esc(job.message)}</p>`;
      const groups = (job.TaskGroups || []).map((g) => [
        esc(g.Name), esc(g.Count),
        esc((g.Tasks || []).map((t) => `${t.Name} (${t.Driver})`).join(", ")),
        esc([...(g.Services || []), ...(g.Tasks || []).flatMap((t) => t.Services || [])].map((s) => s.Name).join(", ") || "-"),
      ]);
      return `<h1>Job ${esc(job.ID)} ${pill(job.Stop ? "dead" : job.Status)}</h1>` +
        kv([["Type", esc(job.Type)], ["Version", esc(job.Version)], ["Datacenters", esc((job.Datacenters || []).join(", "))],
            ["Priority", esc(job.Priority)], ["Namespace", esc(job.Namespace)], ["Submitted", esc(ago(job.SubmitTime))]]) +
        `<h2>Task groups</h2>` + table(["Group", "Count", "Tasks", "Services"], groups, "No groups.") +
        `<h2>Allocations</h2>` + table(ALLOC_HEADERS, allocRows(allocs), "No allocations.");
    });
  }],
  [/^#\/allocations$/, () => live(["/v1/allocations"], (allocs) =>
    `<h1>Allocations</h1>` + table(ALLOC_HEADERS, allocRows(allocs), "No allocations."))],
  [/^#\/allocation\/(.+)$/, (id) => live([`/v1/allocation/${encodeURIComponent(id)}`], (a) => {
    const ports = ((a.AllocatedResources || {}).Shared || {}).Ports || [];
    const tasks = Object.entries(a.TaskStates || {}).map(([name, ts]) =>
      `<h2>Task ${esc(name)} ${pill(ts.State)} <span class="muted">restarts: ${esc(ts.Restarts || 0)}</span></h2>` +
      table(["Time", "Type", "Message"], (ts.Events || []).slice().reverse().map((e) => [
        esc(e.Time ? new Date(e.Time / 1e6).toLocaleString() : "-"), esc(e.Type), esc(e.DisplayMessage || e.Message || ""),
      ]), "No events yet.") +
      `<p><a href="#/logs/${esc(a.ID)}/${encodeURIComponent(name)}/stdout">stdout</a> · ` +
      `<a href="#/logs/${esc(a.ID)}/${encodeURIComponent(name)}/stderr">stderr</a></p>`).join("");
    return `<h1>Allocation <span class="mono">${short(a.ID)}</span> ${pill(a.ClientStatus)}</h1>` +
      kv([["Name", esc(a.Name)], ["Job", `<a href="#/job/${encodeURIComponent(a.JobID)}">${esc(a.JobID)}</a> v${esc(a.JobVersion)}`],
          ["Node", `<a class="mono" href="#/node/${esc(a.NodeID)}">${short(a.NodeID)}</a> ${esc(a.NodeName || "")}`],
          ["Desired", pill(a.DesiredStatus) + " " + esc(a.DesiredDescription || "")],
          ["Client", esc(a.ClientDescription || "-")],
          ["Ports", esc(ports.map((p) => `${p.Label}: ${p.HostIP || ""}:${p.Value}${p.To ? ` → ${p.To}` : ""}`).join(", ") || "-")]]) +
      (tasks || `<p class="muted">No task has reported yet.</p>`);
  })],
  [/^#\/logs\/([^/]+)\/([^/]+)\/(stdout|stderr)$/, (id, task, type) => showLogs(id, decodeURIComponent(task), type)],
  [/^#\/nodes$/, () => live(["/v1/nodes"], (nodes) => `<h1>Clients</h1>` + table(
    ["ID", "Name", "Datacenter", "Class", "Address", "Status", "Eligibility", "Drivers"],
    (nodes || []).map((n) => [
      `<a class="mono" href="#/node/${esc(n.ID)}">${short(n.ID)}</a>`, esc(n.Name), esc(n.Datacenter), esc(n.NodeClass || "-"),
      esc(n.Address || "-"), pill(n.Status), pill(n.SchedulingEligibility) + (n.Drain ? " " + pill("draining") : ""),
      esc(Object.entries(n.Drivers || {}).filter(([, d]) => d.Detected && d.Healthy).map(([k]) => k).join(", ") || "-"),
    ]),
    "No clients have registered.",
  ))],
  [/^#\/node\/(.+)$/, (id) => live([`/v1/node/${encodeURIComponent(id)}/allocations`, `/v1/node/${encodeURIComponent(id)}`], (allocs, n) => {
    if (n instanceof Error) return `<p class="error">${esc(n.message)}</p>`;
    const res = n.NodeResources || {};
    return `<h1>Client ${esc(n.Name)} ${pill(n.Status)}</h1>` +
      kv([["ID", `<span class="mono">${esc(n.ID)}</span>`], ["Datacenter", esc(n.Datacenter)], ["HTTP address", esc(n.HTTPAddr || "-")],
          ["CPU", esc(`${(res.Cpu || {}).CpuShares || 0} MHz, ${(res.Cpu || {}).TotalCpuCores || 0} cores`)],
          ["Memory", esc(`${(res.Memory || {}).MemoryMB || 0} MB`)], ["Eligibility", pill(n.SchedulingEligibility)]]) +
      `<h2>Attributes</h2>` + table(["Name", "Value"], Object.entries(n.Attributes || {}).map(([k, v]) => [esc(k), esc(v)]), "None.") +
      `<h2>Allocations</h2>` + table(ALLOC_HEADERS, allocRows(allocs), "No allocations.");
  })],
  [/^#\/services$/, () => live(["/v1/services"], (spaces) => `<h1>Services</h1>` + table(
    ["Service", "Namespace", "Tags"],
    (spaces || []).flatMap((ns) => (ns.Services || []).map((s) => [
      `<a href="#/service/${encodeURIComponent(s.ServiceName)}">${esc(s.ServiceName)}</a>`, esc(ns.Namespace), esc((s.Tags || []).join(", ")),
    ])),
    "No services are registered in orc's catalog.",
  ))],
  [/^#\/service\/(.+)$/, (name) => live([`/v1/service/${encodeURIComponent(decodeURIComponent(name))}`], (regs) =>
    `<h1>Service ${esc(decodeURIComponent(name))}</h1>` + table(
      ["ID", "Address", "Allocation", "Node", "Tags"],
      (regs || []).map((r) => [`<span class="mono">${esc(r.ID)}</span>`, esc(`${r.Address}:${r.Port}`),
        `<a class="mono" href="#/allocation/${esc(r.AllocID)}">${short(r.AllocID)}</a>`, short(r.NodeID), esc((r.Tags || []).join(", "))]),
      "No instances.",
    ))],
  [/^#\/servers$/, () => live(["/v1/agent/members", "/v1/status/leader"], (m, leader) => `<h1>Servers</h1>` + table(
    ["Name", "Address", "Status", "Leader", "Datacenter", "Region"],
    ((m && m.Members) || []).map((s) => [esc(s.Name), esc(`${s.Addr}:${s.Port}`), pill(s.Status),
      esc((s.Tags || {}).leader === "true" || (typeof leader === "string" && leader === `${s.Addr}:${s.Port}`) ? "yes" : ""),
      esc((s.Tags || {}).dc), esc((s.Tags || {}).region)]),
    "No servers.",
  ))],
];

async function showLogs(id, task, type) {
  if (current) current.abort();
  const ctl = new AbortController();
  current = ctl;
  view.innerHTML = `<h1>${esc(task)} ${esc(type)} <span class="muted mono">${short(id)}</span></h1><p><a href="#/allocation/${esc(id)}">back to the allocation</a></p><pre class="logs" id="logs">Loading…</pre>`;
  const pre = document.getElementById("logs");
  while (!ctl.signal.aborted) {
    try {
      const url = `/v1/client/fs/logs/${encodeURIComponent(id)}?task=${encodeURIComponent(task)}&type=${type}&plain=true&origin=end&offset=65536`;
      const res = await fetch(url, { signal: ctl.signal });
      const text = await res.text();
      pre.textContent = res.status === 200 ? text || "(no output yet)" : `${res.status}: ${text}`;
      pre.scrollTop = pre.scrollHeight;
    } catch (err) {
      if (ctl.signal.aborted) return;
      pre.textContent = err.message;
    }
    await sleep(2000, ctl.signal);
  }
}

function route() {
  const hash = location.hash || "#/jobs";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", hash.startsWith(`#/${a.dataset.section.replace(/s$/, "")}`));
  for (const [re, fn] of routes) {
    const m = hash.match(re);
    if (m) return fn(...m.slice(1));
  }
  location.hash = "#/jobs";
}

async function leader() {
  try {
    const { data } = await get("/v1/status/leader");
    document.getElementById("leader").textContent = data ? `leader ${data}` : "no leader";
  } catch (err) {
    document.getElementById("leader").textContent = "no server answers";
  }
}

window.addEventListener("hashchange", route);
route();
leader();
setInterval(leader, 10000);
