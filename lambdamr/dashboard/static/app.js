// The lambdamr dashboard page: polls the server's JSON API (which reads storage only) and
// draws the jobs, the selected job's progress and task stream, and one task's traceback.
// Everything read from storage is untrusted: it is inserted with textContent, never as HTML.
"use strict";

const POLL_MS = 1000;
const MAX_ROWS = 3000; // task rows drawn in the stream (a bigger job shows its first ones)
const COLOURS = {
  queue: "#c7c7c7", retries: "#9467bd", startup: "#ff9f4a", cold: "#8c564b",
  run: "#1f77b4", raised: "#d62728", result: "#2ca02c", live: "#7fb2e5", straggler: "#ffe066",
};
const SVG = "http://www.w3.org/2000/svg";

let selected = null;       // the job id shown
let selectedFinal = false; // its record is final: no need to poll it again
let openTask = null;       // [job id, task id] of the open task panel

const $ = (id) => document.getElementById(id);

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function money(usd) {
  if (usd === null || usd === undefined) return "–";
  return "$" + (usd < 0.01 ? usd.toPrecision(3) : usd.toFixed(4));
}

function seconds(s) {
  if (s === null || s === undefined) return "–";
  return s < 1 ? (s * 1000).toFixed(0) + " ms" : s.toFixed(2) + " s";
}

function when(epoch) {
  return epoch ? new Date(epoch * 1000).toLocaleString() : "?";
}

function miniBar(job) {
  const bar = el("div", { class: "mini" });
  const total = Math.max(job.tasks, 1);
  for (const [cls, n] of [["ok", job.counts.ok || 0], ["failed", job.counts.failed || 0], ["running", job.counts.running || 0]]) {
    const part = el("div", { class: cls });
    part.style.width = (100 * n / total) + "%";
    bar.appendChild(part);
  }
  return bar;
}

function showJobs(listing) {
  $("location").textContent = listing.location;
  const list = $("jobs");
  list.replaceChildren();
  $("no-jobs").hidden = listing.jobs.length > 0;
  for (const job of listing.jobs) {
    const item = el("li");
    const button = el("button", { class: "job" + (job.job_id === selected ? " selected" : ""), "data-job-id": job.job_id, type: "button" });
    const title = el("div");
    title.appendChild(el("span", { class: "badge " + job.state }, job.state));
    title.appendChild(document.createTextNode(" " + job.job_id));
    button.appendChild(title);
    button.appendChild(el("div", { class: "muted" },
      `${job.function} · ${job.done}/${job.tasks} tasks · ${money(job.cost_usd)} · ${when(job.submitted)}`));
    button.appendChild(miniBar(job));
    button.addEventListener("click", () => select(job.job_id));
    item.appendChild(button);
    list.appendChild(item);
  }
  if (selected === null && listing.jobs.length) select(listing.jobs[0].job_id, false);
}

function select(jobId, byUser = true) {
  selected = jobId;
  selectedFinal = false;
  if (byUser) history.replaceState(null, "", "#job=" + encodeURIComponent(jobId));
  for (const b of document.querySelectorAll(".job")) b.classList.toggle("selected", b.dataset.jobId === jobId);
  refreshJob();
}

function fact(list, name, value) {
  list.appendChild(el("dt", {}, name));
  list.appendChild(el("dd", {}, value));
}

function showJob(job) {
  $("job").hidden = false;
  $("job-title").textContent = job.job_id;
  const state = $("job-state");
  state.textContent = job.state;
  state.className = "badge " + job.state;
  $("job-function").textContent = `${job.function} on ${job.backend} (${job.host}), submitted ${when(job.submitted)}`;
  const c = job.counts;
  const total = Math.max(job.tasks, 1);
  $("bar-ok").style.width = (100 * (c.ok || 0) / total) + "%";
  $("bar-failed").style.width = (100 * (c.failed || 0) / total) + "%";
  $("bar-running").style.width = (100 * (c.running || 0) / total) + "%";
  $("progress-text").textContent =
    `${job.done} / ${job.tasks} tasks done · ${c.running || 0} running · ${c.failed || 0} failed · ` +
    `${c.pending || 0} pending` + (job.sealed ? "" : " (more tasks to come)");
  const facts = $("facts");
  facts.replaceChildren();
  fact(facts, "cost so far", money(job.cost_usd));
  fact(facts, "wall", seconds(job.wall_s));
  fact(facts, "task time", seconds(job.task_seconds));
  fact(facts, "efficiency", job.parallel_efficiency === null ? "–" : Math.round(100 * job.parallel_efficiency) + "%");
  fact(facts, "cold starts", String(job.cold_starts));
  fact(facts, "peak memory", `${Math.round(job.peak_memory_mb || 0)} of ${job.memory_mb} MB`);
  fact(facts, "retries", String(job.retries));
  fact(facts, "backups", String(job.backups));
  drawGantt(job);
  const slow = $("stragglers");
  slow.replaceChildren();
  for (const s of job.stragglers) {
    slow.appendChild(el("li", {}, `task ${s.id}: running for ${seconds(s.running_s)}` + (s.backups ? `, ${s.backups} backup(s) launched` : "")));
  }
  for (const row of job.task_rows.filter((r) => r.backups)) {
    if (!job.stragglers.some((s) => s.id === row.id)) slow.appendChild(el("li", {}, `task ${row.id}: ${row.backups} backup(s) launched, ${row.state}`));
  }
  if (!slow.children.length) slow.appendChild(el("li", { class: "muted" }, "none"));
  const failures = $("failures");
  failures.replaceChildren();
  for (const f of job.failures) {
    const item = el("li", { class: "failure", "data-task": String(f.task_id) }, `task ${f.task_id}: ${f.error}`);
    const button = el("button", { class: "show-task", type: "button", "data-task": String(f.task_id) }, "traceback");
    button.addEventListener("click", () => showTask(job.job_id, f.task_id));
    item.appendChild(button);
    failures.appendChild(item);
  }
  if (!job.failures.length) failures.appendChild(el("li", { class: "muted" }, "none"));
  $("summary").textContent = job.summary_text;
}

function drawGantt(job) {
  const svg = $("gantt");
  svg.replaceChildren();
  const rows = job.task_rows.slice(0, MAX_ROWS);
  const width = Math.max(600, $("gantt-box").clientWidth - 4);
  const h = Math.max(2, Math.min(14, Math.floor(480 / Math.max(rows.length, 1))));
  const labelW = 48;
  const running = job.state === "running";
  const elapsed = running ? Math.max(0, Date.now() / 1000 - job.submitted) : (job.wall_s || 0);
  let end = elapsed;
  for (const r of rows) end = Math.max(end, r.completed || 0, r.finished || 0);
  end = Math.max(end, 1e-3) * 1.02;
  const x = (t) => labelW + (width - labelW) * Math.max(0, t) / end;
  svg.setAttribute("width", width);
  svg.setAttribute("height", rows.length * h + 24);
  const stragglers = new Set(job.stragglers.map((s) => s.id));
  const segment = (row, y, from, to, colour, what) => {
    if (from === null || from === undefined || to === null || to === undefined || to < from) return;
    const r = document.createElementNS(SVG, "rect");
    r.setAttribute("x", x(from));
    r.setAttribute("y", y);
    r.setAttribute("width", Math.max(1, x(to) - x(from)));
    r.setAttribute("height", Math.max(1, h - 1));
    r.setAttribute("fill", colour);
    r.setAttribute("class", "task");
    r.dataset.task = row.id;
    r.dataset.state = row.state;
    const tip = document.createElementNS(SVG, "title");
    tip.textContent = `task ${row.id} (${row.state}): ${what} ${seconds(to - from)}` + (row.error ? ` — ${row.error}` : "");
    r.appendChild(tip);
    r.addEventListener("click", () => showTask(job.job_id, row.id));
    svg.appendChild(r);
  };
  rows.forEach((row, i) => {
    const y = i * h;
    if (stragglers.has(row.id)) {
      const band = document.createElementNS(SVG, "rect");
      band.setAttribute("x", 0); band.setAttribute("y", y); band.setAttribute("width", width); band.setAttribute("height", h);
      band.setAttribute("fill", COLOURS.straggler);
      svg.appendChild(band);
    }
    if (h >= 9 && (i % Math.ceil(12 / h) === 0)) {
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", 2); label.setAttribute("y", y + h - 2); label.setAttribute("font-size", Math.min(11, h));
      label.textContent = String(row.id);
      svg.appendChild(label);
    }
    if (row.dispatched === null) return; // pending
    segment(row, y, 0, row.dispatched, COLOURS.queue, "queue");
    segment(row, y, row.dispatched, row.invoked, COLOURS.retries, "failed attempts");
    if (row.started !== null) {
      segment(row, y, row.invoked, row.started, row.cold ? COLOURS.cold : COLOURS.startup, row.cold ? "start-up (cold)" : "start-up");
      segment(row, y, row.started, row.finished, row.state === "failed" ? COLOURS.raised : COLOURS.run, "run");
      segment(row, y, row.finished, row.completed, COLOURS.result, "result");
    } else if (row.state === "running") {
      segment(row, y, row.invoked, elapsed, COLOURS.live, "in flight");
    } else {
      segment(row, y, row.invoked, row.completed, COLOURS.raised, "lost");
    }
    if (row.backups) {
      const mark = document.createElementNS(SVG, "rect");
      mark.setAttribute("x", labelW - 6); mark.setAttribute("y", y + 1); mark.setAttribute("width", 4); mark.setAttribute("height", Math.max(1, h - 3));
      mark.setAttribute("fill", "none"); mark.setAttribute("stroke", "#000");
      svg.appendChild(mark);
    }
  });
  const axis = document.createElementNS(SVG, "text");
  axis.setAttribute("x", labelW); axis.setAttribute("y", rows.length * h + 16); axis.setAttribute("font-size", 11);
  axis.textContent = `0 … ${seconds(end)} since submission`;
  svg.appendChild(axis);
  if (running) {
    const now = document.createElementNS(SVG, "line");
    now.setAttribute("x1", x(elapsed)); now.setAttribute("x2", x(elapsed));
    now.setAttribute("y1", 0); now.setAttribute("y2", rows.length * h);
    now.setAttribute("stroke", "#000"); now.setAttribute("stroke-dasharray", "3,3");
    svg.appendChild(now);
  }
  $("gantt-note").textContent = job.task_rows_truncated || job.task_rows.length > MAX_ROWS
    ? `showing the first ${rows.length} of ${job.tasks} tasks` : "";
}

async function showTask(jobId, taskId) {
  openTask = [jobId, taskId];
  const panel = $("task-panel");
  panel.hidden = false;
  $("task-title").textContent = `task ${taskId} of ${jobId}`;
  try {
    const task = await getJSON(`/api/jobs/${encodeURIComponent(jobId)}/tasks/${taskId}`);
    const t = task.task;
    $("task-facts").textContent = `${t.state}, ${t.attempts} attempt(s)` + (t.cold ? ", cold start" : "") +
      (t.peak_mb ? `, peak memory ${t.peak_mb} MB` : "") +
      (t.started !== null && t.finished !== null ? `, ran ${seconds(t.finished - t.started)}` : "");
    $("task-error").textContent = task.error || "none";
    $("traceback").textContent = task.traceback || (task.error ? "(no traceback was recorded)" : "(the task did not fail)");
    $("task-logs").textContent = task.logs || "(the task printed nothing)";
  } catch (err) {
    $("task-error").textContent = String(err.message || err);
  }
}

async function refreshJob() {
  if (selected === null || selectedFinal) return;
  try {
    const job = await getJSON(`/api/jobs/${encodeURIComponent(selected)}`);
    if (job.job_id !== selected) return;
    showJob(job);
    selectedFinal = job.state !== "running";
  } catch (err) {
    $("status").textContent = "job " + selected + ": " + (err.message || err);
  }
}

async function poll() {
  try {
    showJobs(await getJSON("/api/jobs"));
    await refreshJob();
    $("status").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (err) {
    $("status").textContent = "cannot read storage: " + (err.message || err);
  }
  setTimeout(poll, POLL_MS);
}

$("close-task").addEventListener("click", () => { $("task-panel").hidden = true; openTask = null; });
const wanted = new URLSearchParams(location.hash.slice(1)).get("job");
if (wanted) select(wanted, false);
poll();
