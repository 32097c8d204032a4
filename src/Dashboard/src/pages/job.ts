import { act, getJob, imageUrl, listImages, watch, type JobAction } from "../api";
import { age, el, errorBox, progressBar, refinerText, show, stateName } from "../dom";
import type { Stop } from "../main";
import { markFirstPaint, markUpdate, resetFirstPaint } from "../perf";
import type { ImagePreview, JobEvent, JobImage, JobStatus } from "../types";

const LogLimit = 300;
const PageSize = 10_000;

interface Tile {
  image: JobImage; figure: HTMLElement; img: HTMLImageElement; caption: HTMLElement; loaded: boolean; visible: boolean;
  /** The latest preview that arrived while the tile was off screen: shown when it scrolls into view. */
  pending?: ImagePreview;
}

/**
 * One job: its status and actions, a grid of its images filling in live over WatchJob (with previews): the latest
 * preview while an image renders, the stored PNG once it is done (fetched when its tile is on screen), a click-through
 * to the full image and its parameters, the event log and the failures with their reasons.
 */
export function jobPage(jobId: string): Stop {
  const started = performance.now();
  resetFirstPaint("job");
  const abort = new AbortController();
  const urls: string[] = [];
  const tiles = new Map<number, Tile>();
  /** Base + refiner: the stage each shard last started ("base", "refiner"), shown on its images' previews. */
  const stages = new Map<number, string>();
  const summary = el("div", { className: "summary" });
  const grid = el("div", { className: "grid", id: "grid" });
  const log = el("ol", { className: "log", id: "log" });
  const failures = el("ul", { className: "failures", id: "failures" });
  const notice = el("div");
  let job: JobStatus | null = null;
  let statusTimer = 0;

  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      const tile = tiles.get(Number((entry.target as HTMLElement).dataset.index));
      if (!tile) continue;
      tile.visible = entry.isIntersecting;
      if (!tile.visible) continue;
      if (tile.pending) showPreview(tile, tile.pending);
      void loadFinal(tile);
    }
  }, { rootMargin: "200px" });

  show(el("div", { className: "toolbar" }, el("a", { href: "#/jobs" }, "← Jobs"), el("h1", {}, "Job ", el("code", {}, jobId))),
    notice, summary,
    el("section", {}, el("h2", {}, "Images"), grid),
    el("section", { className: "columns" },
      el("div", {}, el("h2", {}, "Failures"), failures),
      el("div", {}, el("h2", {}, "Events"), log)));

  async function loadFinal(tile: Tile): Promise<void> {
    if (tile.loaded || tile.image.state !== "IMAGE_STATE_DONE" || !tile.visible) return;
    tile.loaded = true;
    try {
      const url = await imageUrl(jobId, tile.image.index ?? 0, abort.signal);
      urls.push(url);
      tile.img.src = url;
      tile.figure.dataset.state = "done";
      tile.img.classList.remove("preview");
    } catch (e) {
      tile.loaded = false;
      if (!abort.signal.aborted) tile.caption.textContent = `#${tile.image.index ?? 0}: ${e instanceof Error ? e.message : e}`;
    }
  }

  function renderSummary(): void {
    if (!job) return;
    const state = stateName(job.state, "JOB_STATE_");
    const p = job.params ?? {};
    const button = (action: JobAction, enabled: boolean) =>
      el("button", { className: `action ${action}`, disabled: !enabled, dataset: { action }, onclick: () => run(action) }, action);
    summary.replaceChildren(
      el("div", { className: "status" },
        el("span", { className: `state ${state}`, id: "job-state" }, state),
        ` ${job.imagesDone ?? 0} done, ${job.imagesFailed ?? 0} failed of ${job.imageCount ?? 0} · ${job.shardsDone ?? 0}/${job.shardCount ?? 0} shards · ` +
        `${stateName(job.priority, "PRIORITY_")} priority · ${age(job.createdUnixMs)} old` + (job.previewEvery ? ` · previews every ${job.previewEvery} steps` : ""),
        job.note ? el("div", { className: "muted" }, job.note) : null),
      progressBar(job.imagesDone ?? 0, job.imagesFailed ?? 0, job.imageCount ?? 0),
      el("div", { className: "muted small", id: "job-params" }, `${p.model}${refinerText(p)} · ${p.width}x${p.height} · ${p.steps} steps · guidance ${p.guidanceScale} · ${p.scheduler}` + (job.label ? ` · ${job.label}` : "")),
      el("div", { className: "actions" },
        button("pause", state === "queued" || state === "running"),
        button("resume", state === "paused"),
        button("cancel", state === "queued" || state === "running" || state === "paused"),
        button("retry", state === "failed")));
  }

  async function run(action: JobAction): Promise<void> {
    try {
      job = await act(jobId, action);
      renderSummary();
      if (action === "retry") void follow();
    } catch (e) {
      notice.replaceChildren(errorBox(e));
    }
  }

  /** Status reads are coalesced: at most one a second while events stream in. */
  function refreshStatusSoon(): void {
    if (statusTimer) return;
    statusTimer = window.setTimeout(async () => {
      statusTimer = 0;
      try { job = await getJob(jobId); renderSummary(); } catch { /* the stream's next event retries */ }
    }, 1000);
  }

  function addTile(image: JobImage, into: Node): void {
    const index = image.index ?? 0;
    const img = el("img", { alt: `image ${index}`, loading: "lazy" });
    const caption = el("figcaption", {}, `#${index} · seed ${image.seed ?? 0}`);
    const figure = el("figure", { className: "tile", dataset: { index: String(index), state: stateName(image.state, "IMAGE_STATE_") }, title: image.prompt ?? "", onclick: () => void view(tile) }, img, caption);
    const tile: Tile = { image, figure, img, caption, loaded: false, visible: false };
    if (image.state === "IMAGE_STATE_FAILED") fail(tile, image.error ?? "");
    tiles.set(index, tile);
    into.appendChild(figure);
    observer.observe(figure);
  }

  function showPreview(tile: Tile, preview: ImagePreview): void {
    tile.pending = undefined;
    if (tile.image.state === "IMAGE_STATE_DONE" || tile.image.state === "IMAGE_STATE_FAILED") return;
    tile.img.src = `data:image/png;base64,${preview.png}`;
    tile.img.classList.add("preview");
    tile.figure.dataset.state = "preview";
    const stage = stages.get(preview.shardIndex ?? 0);
    tile.caption.textContent = `#${tile.image.index ?? 0} · ${stage ? `${stage} · ` : ""}step ${preview.step}/${preview.totalSteps}`;
  }

  function fail(tile: Tile, error: string): void {
    tile.image.state = "IMAGE_STATE_FAILED";
    tile.image.error = error;
    tile.figure.dataset.state = "failed";
    tile.caption.textContent = `#${tile.image.index ?? 0} failed`;
    failures.append(el("li", { dataset: { index: String(tile.image.index ?? 0) } }, el("b", {}, `#${tile.image.index ?? 0}`), ` ${error}`));
  }

  function logLine(e: JobEvent): void {
    const text = describe(e);
    if (!text) return;
    const time = new Date(Number(e.unixMs ?? 0)).toLocaleTimeString();
    log.prepend(el("li", { className: e.imageFailed || e.attemptFailed ? "bad" : "" }, el("span", { className: "muted" }, time), ` ${text}`));
    while (log.childElementCount > LogLimit) log.lastElementChild!.remove();
  }

  function apply(e: JobEvent): void {
    const received = performance.now();
    if (e.shardStarted?.stage) stages.set(e.shardStarted.shardIndex ?? 0, e.shardStarted.stage);
    if (e.preview) {
      const tile = tiles.get(e.preview.index ?? 0);
      if (tile && tile.image.state !== "IMAGE_STATE_DONE" && tile.image.state !== "IMAGE_STATE_FAILED" && e.preview.png) {
        // Off screen, a preview only replaces the one kept for later: a 1,000-image job's previews would otherwise
        // decode and lay out images nobody sees (bench/dashboard.md).
        if (tile.visible) showPreview(tile, e.preview);
        else tile.pending = e.preview;
      }
      markUpdate(received);
      return;
    }
    if (e.imageDone) {
      const tile = tiles.get(e.imageDone.index ?? 0);
      // A replayed event of an image whose PNG is already shown (the listing said done) changes nothing.
      if (tile && !tile.loaded) {
        tile.pending = undefined;
        tile.image.state = "IMAGE_STATE_DONE";
        tile.figure.dataset.state = "stored";
        tile.caption.textContent = `#${tile.image.index ?? 0} · seed ${tile.image.seed ?? 0}`;
        void loadFinal(tile);
      }
    } else if (e.imageFailed) {
      const tile = tiles.get(e.imageFailed.index ?? 0);
      // A replayed failure of an image the listing already shows failed, or done since (retried), changes nothing.
      if (tile && tile.image.state !== "IMAGE_STATE_FAILED" && tile.image.state !== "IMAGE_STATE_DONE") fail(tile, e.imageFailed.error ?? "");
    } else if (e.queued && failures.childElementCount > 0) {
      // A retry: the failed images render again.
      for (const tile of tiles.values()) if (tile.image.state === "IMAGE_STATE_FAILED") { tile.image.state = "IMAGE_STATE_PENDING"; tile.figure.dataset.state = "pending"; }
      failures.replaceChildren();
    }
    logLine(e);
    refreshStatusSoon();
    markUpdate(received);
  }

  let following = false;
  let after = ""; // the last event applied: a broken stream, and a retried job's new events, go on from there
  /** Follows the event stream to the job's end, resuming after the last event on a broken stream. */
  async function follow(): Promise<void> {
    if (following) return;
    following = true;
    for (let attempt = 0; !abort.signal.aborted; attempt++) {
      try {
        let finished = false;
        await watch(jobId, { after, previews: true, signal: abort.signal }, (e) => {
          if (e.eventId) after = e.eventId;
          if (e.jobFinished) finished = true;
          apply(e);
        });
        if (finished) break;
      } catch (e) {
        if (abort.signal.aborted) break;
        notice.replaceChildren(errorBox(`live updates interrupted (${e instanceof Error ? e.message : e}); reconnecting`));
      }
      await new Promise((r) => setTimeout(r, Math.min(5000, 500 * (attempt + 1))));
    }
    following = false;
    notice.replaceChildren();
    try { job = await getJob(jobId); renderSummary(); } catch { /* page left */ }
  }

  async function view(tile: Tile): Promise<void> {
    const dialog = document.getElementById("viewer") as HTMLDialogElement;
    const image = tile.image;
    const p = image.params ?? job?.params ?? {};
    const picture = el("img", { className: "full", alt: `image ${image.index ?? 0}` });
    const rows: [string, string][] = [
      ["Prompt", image.prompt ?? ""], ["Negative prompt", image.negativePrompt ?? ""], ["Seed", String(image.seed ?? 0)],
      ["Model", p.model ?? ""], ["Size", `${p.width}x${p.height}`], ["Steps", String(p.steps ?? "")],
      ["Guidance", String(p.guidanceScale ?? "")], ["Scheduler", p.scheduler ?? ""],
      ...(p.refiner ? [["Refiner", `${p.refiner}, switch at ${p.refinerStart ?? ""}`] as [string, string]] : []),
      ["State", stateName(image.state, "IMAGE_STATE_")], ...(image.error ? [["Error", image.error] as [string, string]] : []),
      ...(image.sha256 ? [["sha256", image.sha256] as [string, string]] : []),
    ];
    const download = el("a", { className: "button", hidden: true }, "Download PNG");
    dialog.replaceChildren(el("form", { method: "dialog", className: "viewer" },
      el("div", { className: "toolbar" }, el("h2", {}, `Image #${image.index ?? 0}`), el("button", { value: "close" }, "Close")),
      picture,
      el("table", { className: "params" }, el("tbody", {}, ...rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))))),
      download));
    dialog.showModal();
    if (image.state === "IMAGE_STATE_DONE") {
      try {
        const url = await imageUrl(jobId, image.index ?? 0, abort.signal);
        urls.push(url);
        picture.src = url;
        Object.assign(download, { href: url, download: `${jobId}-${image.index ?? 0}.png`, hidden: false });
      } catch (e) {
        picture.replaceWith(errorBox(e));
      }
    } else if (tile.img.src) {
      picture.src = tile.img.src;
      picture.classList.add("preview");
    }
  }

  async function load(): Promise<void> {
    try {
      job = await getJob(jobId);
      renderSummary();
      const fragment = document.createDocumentFragment();
      for (let offset = 0; offset < (job.imageCount ?? 0); offset += PageSize) {
        const page = await listImages(jobId, offset, PageSize);
        for (const image of page.images ?? []) addTile(image, fragment);
      }
      grid.append(fragment);
      markFirstPaint("job", started);
      void follow();
    } catch (e) {
      notice.replaceChildren(errorBox(e));
    }
  }

  void load();
  return () => {
    abort.abort();
    observer.disconnect();
    clearTimeout(statusTimer);
    for (const url of urls) URL.revokeObjectURL(url);
  };
}

function describe(e: JobEvent): string | null {
  if (e.queued) return `queued: ${e.queued.imageCount ?? 0} images in ${e.queued.shardCount ?? 0} shards`;
  if (e.shardStarted) return `shard ${e.shardStarted.shardIndex ?? 0}${e.shardStarted.stage ? ` (${e.shardStarted.stage} stage)` : ""} started on ${e.shardStarted.workerId} (${e.shardStarted.imageCount ?? 0} images)`;
  if (e.step) return `shard ${e.step.shardIndex ?? 0}: step ${e.step.step ?? 0}/${e.step.totalSteps ?? 0} on ${e.step.workerId} (${(e.step.itPerSec ?? 0).toFixed(1)} it/s)`;
  if (e.imageDone) return `image ${e.imageDone.index ?? 0} done (${e.imageDone.imagesDone ?? 0} so far)`;
  if (e.imageFailed) return `image ${e.imageFailed.index ?? 0} failed: ${e.imageFailed.error ?? ""}`;
  if (e.shardDone) return `shard ${e.shardDone.shardIndex ?? 0} done`;
  if (e.stateChanged) return `now ${stateName(e.stateChanged.state, "JOB_STATE_")}`;
  if (e.attemptFailed) {
    const a = e.attemptFailed;
    return `shard ${a.shardIndex ?? 0} attempt ${a.attempt ?? 0}/${a.maxAttempts ?? 0} failed on ${a.workerId} (${stateName(a.kind, "FAILURE_KIND_")}): ${a.error ?? ""}`;
  }
  if (e.jobFinished) return `job ${stateName(e.jobFinished.state, "JOB_STATE_")}: ${e.jobFinished.imagesDone ?? 0} done, ${e.jobFinished.imagesFailed ?? 0} failed`;
  return null;
}
