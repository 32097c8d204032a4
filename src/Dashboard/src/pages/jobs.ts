import { act, listJobs, type JobAction } from "../api";
import { age, el, errorBox, progressBar, show, stateName } from "../dom";
import type { Stop } from "../main";
import { markFirstPaint, markUpdate, resetFirstPaint } from "../perf";
import type { JobStatus } from "../types";

const RefreshMs = 2000;
const Limit = 1000;

/** The caller's jobs, newest first, refreshed every 2 s (rows are updated in place, only where a job changed). */
export function jobsPage(): Stop {
  const started = performance.now();
  resetFirstPaint("jobs");
  const body = el("tbody");
  const status = el("p", { className: "muted" });
  const filter = el("select", { id: "state-filter", onchange: () => apply() },
    ...["all", "queued", "running", "paused", "completed", "failed", "cancelled"].map((s) => el("option", { value: s }, s)));
  const rows = new Map<string, { row: HTMLTableRowElement; signature: string; job: JobStatus }>();
  let timer = 0;
  let stopped = false;

  show(
    el("div", { className: "toolbar" }, el("h1", {}, "Jobs"), el("label", {}, "State ", filter), status),
    el("table", { className: "jobs" },
      el("thead", {}, el("tr", {}, ...["Job", "State", "Progress", "Done", "Failed", "Age", "Priority", ""].map((h) => el("th", {}, h)))),
      body));

  function apply(): void {
    const wanted = filter.value;
    for (const { row, job } of rows.values()) row.hidden = wanted !== "all" && stateName(job.state, "JOB_STATE_") !== wanted;
  }

  async function run(action: JobAction, job: JobStatus): Promise<void> {
    try {
      const updated = await act(job.jobId, action);
      upsert(updated, body.firstChild);
    } catch (e) {
      status.replaceChildren(errorBox(e));
    }
  }

  function actions(job: JobStatus): HTMLElement {
    const state = stateName(job.state, "JOB_STATE_");
    const button = (action: JobAction, enabled: boolean) =>
      el("button", { className: `action ${action}`, disabled: !enabled, dataset: { action }, onclick: () => run(action, job) }, action);
    return el("td", { className: "actions" },
      button("pause", state === "queued" || state === "running"),
      button("resume", state === "paused"),
      button("cancel", state === "queued" || state === "running" || state === "paused"),
      button("retry", state === "failed"));
  }

  function render(job: JobStatus): HTMLTableRowElement {
    const total = job.imageCount ?? 0, done = job.imagesDone ?? 0, failed = job.imagesFailed ?? 0;
    const state = stateName(job.state, "JOB_STATE_");
    return el("tr", { dataset: { job: job.jobId, state } },
      el("td", {}, el("a", { href: `#/job/${encodeURIComponent(job.jobId)}` }, job.label || job.jobId), job.label ? el("div", { className: "muted small" }, job.jobId) : null),
      el("td", {}, el("span", { className: `state ${state}` }, state), job.note ? el("div", { className: "muted small" }, job.note) : null),
      el("td", {}, progressBar(done, failed, total)),
      el("td", { className: "num" }, `${done}/${total}`),
      el("td", { className: "num" }, String(failed)),
      el("td", { className: "num" }, age(job.createdUnixMs)),
      el("td", {}, stateName(job.priority, "PRIORITY_")),
      actions(job));
  }

  function upsert(job: JobStatus, before: ChildNode | null): HTMLTableRowElement {
    const signature = JSON.stringify(job) + age(job.createdUnixMs);
    const known = rows.get(job.jobId);
    if (known && known.signature === signature) return known.row;
    const row = render(job);
    if (known) known.row.replaceWith(row);
    else body.insertBefore(row, before);
    rows.set(job.jobId, { row, signature, job });
    return row;
  }

  async function refresh(): Promise<void> {
    try {
      const jobs = await listJobs(Limit);
      if (stopped) return;
      const received = performance.now();
      const seen = new Set(jobs.map((j) => j.jobId));
      for (const [id, { row }] of rows) if (!seen.has(id)) { row.remove(); rows.delete(id); }
      let previous: HTMLTableRowElement | null = null;
      for (const job of jobs) {
        const row = upsert(job, previous ? previous.nextSibling : body.firstChild);
        if (previous ? previous.nextSibling !== row : body.firstChild !== row) body.insertBefore(row, previous ? previous.nextSibling : body.firstChild);
        previous = row;
      }
      apply();
      status.textContent = jobs.length === 0 ? "No jobs yet: submit one with farm submit." : `${jobs.length} jobs`;
      markFirstPaint("jobs", started);
      markUpdate(received);
    } catch (e) {
      status.replaceChildren(errorBox(e));
    }
    if (!stopped) timer = window.setTimeout(refresh, RefreshMs);
  }

  void refresh();
  return () => { stopped = true; clearTimeout(timer); };
}
