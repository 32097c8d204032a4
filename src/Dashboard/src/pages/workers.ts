import { listWorkers, releaseWorker } from "../api";
import { age, bytes, el, errorBox, show, stateName } from "../dom";
import type { Stop } from "../main";
import type { WorkerInfo } from "../types";

const RefreshMs = 2000;

/** The fleet (an admin's page): each worker's state, models, current shard, speed, device and memory; a quarantine can be lifted. */
export function workersPage(): Stop {
  const body = el("tbody");
  const status = el("p", { className: "muted" });
  let timer = 0;
  let stopped = false;
  show(el("div", { className: "toolbar" }, el("h1", {}, "Workers"), status),
    el("table", { className: "workers" },
      el("thead", {}, el("tr", {}, ...["Worker", "State", "Models", "Current shard", "it/s", "Images", "Failed shards", "Device", "Memory", "Seen", ""].map((h) => el("th", {}, h)))),
      body));

  function row(w: WorkerInfo): HTMLTableRowElement {
    const state = stateName(w.state, "WORKER_STATE_");
    return el("tr", { dataset: { worker: w.workerId, state } },
      el("td", {}, w.workerId),
      el("td", {}, el("span", { className: `state ${state}` }, state), w.loading ? el("div", { className: "muted small" }, w.loading) : null),
      el("td", {}, (w.models ?? []).join(", ")),
      el("td", {}, w.currentJobId ? el("a", { href: `#/job/${encodeURIComponent(w.currentJobId)}` }, `${w.currentJobId}/${w.currentShard ?? 0}`) : ""),
      el("td", { className: "num" }, w.itPerSec ? w.itPerSec.toFixed(2) : ""),
      el("td", { className: "num" }, String(w.imagesDone ?? 0)),
      el("td", { className: "num" }, String(w.shardsFailed ?? 0)),
      el("td", {}, `${w.executionProvider ?? ""} ${w.device ?? ""}`.trim()),
      el("td", { className: "num" }, memory(w)),
      el("td", { className: "num" }, age(w.lastSeenUnixMs)),
      el("td", {}, state === "quarantined"
        ? el("button", { className: "action release", onclick: async () => {
            try { await releaseWorker(w.workerId); void refresh(); } catch (e) { status.replaceChildren(errorBox(e)); }
          } }, "release")
        : ""));
  }

  /** In use (as the worker last measured it, after its latest model load) of the device's total; the total alone before. */
  function memory(w: WorkerInfo): string {
    if (!w.memoryBytes) return "";
    return w.memoryUsedBytes && w.memoryUsedBytes !== "0" ? `${bytes(w.memoryUsedBytes)} / ${bytes(w.memoryBytes)}` : bytes(w.memoryBytes);
  }

  async function refresh(): Promise<void> {
    clearTimeout(timer);
    try {
      const workers = await listWorkers();
      if (stopped) return;
      body.replaceChildren(...workers.map(row));
      status.textContent = `${workers.length} workers`;
    } catch (e) {
      status.replaceChildren(errorBox(e));
    }
    if (!stopped) timer = window.setTimeout(refresh, RefreshMs);
  }

  void refresh();
  return () => { stopped = true; clearTimeout(timer); };
}
