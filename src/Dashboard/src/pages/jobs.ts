import { act, listJobs, type JobAction } from "../api";
import { age, el, errorBox, progressBar, refinerText, show, stateName } from "../dom";
import type { Stop } from "../main";
import { markFirstPaint, markUpdate, resetFirstPaint } from "../perf";
import type { GenerationParams, JobStatus } from "../types";

const RefreshMs = 2000;
/** Rows in the table at once: a page of 1,000 rows took seconds to lay out on a busy CPU (bench/dashboard.md). */
export const PageRows = 100;

interface Row { row: HTMLTableRowElement; signature: string }

/**
 * The caller's jobs, newest first, refreshed every 2 s, a page of {@link PageRows} at a time, paged by the server
 * (ListJobs' page tokens; the state filter applies there too): only the page's jobs are fetched and only its rows
 * exist in the document, and a row is rebuilt only where its job changed. A page after the first starts below the
 * previous page's last job, so new submissions do not shift it.
 */
export function jobsPage(): Stop {
  const started = performance.now();
  resetFirstPaint("jobs");
  const body = el("tbody");
  const status = el("p", { className: "muted" });
  const filter = el("select", { id: "state-filter", onchange: () => { page = 0; starts = [{ token: "", offset: 0 }]; reload(); } },
    ...["all", "queued", "running", "paused", "completed", "failed", "cancelled"].map((s) => el("option", { value: s }, s)));
  const range = el("span", { className: "muted", id: "jobs-range" });
  const previous = el("button", { className: "page-previous", onclick: () => { if (page > 0) { page--; reload(); } } }, "← newer");
  const next = el("button", {
    className: "page-next",
    onclick: () => {
      if (!nextToken) return;
      starts[page + 1] = { token: nextToken, offset: starts[page].offset + jobs.length };
      page++;
      reload();
    },
  }, "older →");
  const rows = new Map<string, Row>();
  let jobs: JobStatus[] = [];
  let page = 0;
  /** Where each page visited starts: its page token and the rows before it. */
  let starts: { token: string; offset: number }[] = [{ token: "", offset: 0 }];
  let nextToken = "";
  let total = 0;
  let timer = 0;
  let stopped = false;

  show(
    el("div", { className: "toolbar" }, el("h1", {}, "Jobs"), el("label", {}, "State ", filter), status),
    el("table", { className: "jobs" },
      el("thead", {}, el("tr", {}, ...["Job", "State", "Model", "Progress", "Done", "Failed", "Age", "Priority", ""].map((h) => el("th", {}, h)))),
      body),
    el("div", { className: "pager" }, previous, range, next));

  async function run(action: JobAction, job: JobStatus): Promise<void> {
    try {
      const updated = await act(job.jobId, action);
      jobs = jobs.map((j) => (j.jobId === updated.jobId ? updated : j));
      renderPage();
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
      modelCell(job.params),
      el("td", {}, progressBar(done, failed, total)),
      el("td", { className: "num" }, `${done}/${total}`),
      el("td", { className: "num" }, String(failed)),
      el("td", { className: "num" }, age(job.createdUnixMs)),
      el("td", {}, stateName(job.priority, "PRIORITY_")),
      actions(job));
  }

  /** The job's row, rebuilt only when what it shows has changed. */
  function rowOf(job: JobStatus): HTMLTableRowElement {
    const signature = JSON.stringify(job) + age(job.createdUnixMs);
    const known = rows.get(job.jobId);
    if (known && known.signature === signature) return known.row;
    const row = render(job);
    rows.set(job.jobId, { row, signature });
    return row;
  }

  /** Puts the current page's rows in the table (in order, moving only what moved) and updates the pager. */
  function renderPage(): void {
    const wantedRows = jobs.map(rowOf);
    const onPage = new Set(wantedRows);
    for (const child of [...body.children]) if (!onPage.has(child as HTMLTableRowElement)) child.remove();
    let cursor: ChildNode | null = body.firstChild;
    for (const row of wantedRows) {
      if (cursor === row) { cursor = row.nextSibling; continue; }
      body.insertBefore(row, cursor);
    }
    // Rows of jobs not on this page are forgotten: the server sends only the page.
    const present = new Set(jobs.map((j) => j.jobId));
    for (const id of rows.keys()) if (!present.has(id)) rows.delete(id);
    const offset = starts[page].offset;
    // The total counts every state: shown only for the unfiltered listing.
    range.textContent = jobs.length === 0 ? "" : `${offset + 1}–${offset + jobs.length}${filter.value === "all" ? ` of ${total}` : ""}`;
    previous.disabled = page === 0;
    next.disabled = nextToken === "";
  }

  /** Fetches the current page now (a pager or filter change), in place of the pending refresh. */
  function reload(): void {
    clearTimeout(timer);
    void refresh();
  }

  async function refresh(): Promise<void> {
    const asked = { page, token: starts[page].token, state: filter.value };
    try {
      const result = await listJobs(PageRows, asked.token, asked.state === "all" ? undefined : `JOB_STATE_${asked.state.toUpperCase()}`);
      if (stopped) return;
      // A pager or filter change while this was in flight: its own fetch paints.
      if (asked.page !== page || asked.state !== filter.value || asked.token !== starts[page].token) return;
      const received = performance.now();
      jobs = result.jobs;
      nextToken = result.nextPageToken;
      total = result.totalJobs;
      renderPage();
      status.textContent = total === 0 ? "No jobs yet: submit one with farm submit." : `${total} jobs`;
      markFirstPaint("jobs", started);
      markUpdate(received);
    } catch (e) {
      status.replaceChildren(errorBox(e));
    }
    if (!stopped) { clearTimeout(timer); timer = window.setTimeout(refresh, RefreshMs); }
  }

  void refresh();
  return () => { stopped = true; clearTimeout(timer); };
}

/** The model a job renders with and, for a base + refiner job, its refiner (README "SDXL base + refiner"). */
function modelCell(p: GenerationParams | undefined): HTMLTableCellElement {
  return el("td", { className: "model" }, p?.model ?? "",
    p?.refiner ? el("div", { className: "muted small refiner" }, refinerText(p).trim()) : null);
}
