import { listModels } from "../api";
import { el, errorBox, show, stateName } from "../dom";
import type { Stop } from "../main";
import type { ModelInfo } from "../types";

const RefreshMs = 2000;

/** What the farm can render: models some online worker serves, and the shards waiting for each, by priority. */
export function modelsPage(): Stop {
  const body = el("tbody");
  const status = el("p", { className: "muted" });
  let timer = 0;
  let stopped = false;
  show(el("div", { className: "toolbar" }, el("h1", {}, "Models"), status),
    el("table", { className: "models" },
      el("thead", {}, el("tr", {}, ...["Model", "Workers", "Waiting: high", "normal", "low", "total"].map((h) => el("th", {}, h)))),
      body));

  const waiting = (m: ModelInfo, priority: string) =>
    String(m.queued?.find((q) => stateName(q.priority, "PRIORITY_") === priority)?.shardsWaiting ?? 0);

  async function refresh(): Promise<void> {
    try {
      const models = await listModels();
      if (stopped) return;
      body.replaceChildren(...models.map((m) => el("tr", { dataset: { model: m.name } },
        el("td", {}, m.name), el("td", { className: "num" }, String(m.workers ?? 0)),
        el("td", { className: "num" }, waiting(m, "high")), el("td", { className: "num" }, waiting(m, "normal")),
        el("td", { className: "num" }, waiting(m, "low")), el("td", { className: "num" }, String(m.shardsWaiting ?? 0)))));
      status.textContent = models.length === 0 ? "No online worker serves a model." : "";
    } catch (e) {
      status.replaceChildren(errorBox(e));
    }
    if (!stopped) timer = window.setTimeout(refresh, RefreshMs);
  }

  void refresh();
  return () => { stopped = true; clearTimeout(timer); };
}
