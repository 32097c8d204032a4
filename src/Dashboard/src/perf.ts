// Timings the browser test and bench/dashboard.sh read (window.__dashboardPerf): when each page first showed its data,
// and how long live updates took from arriving to being painted.

interface DashboardPerf {
  /** Per page: ms from the page's start (its route) to the frame after its first data render; -1 while pending. */
  firstPaint: Record<string, number>;
  /** Per page: the same moment as performance.now(), i.e. ms since the document's navigation started. */
  firstPaintAt: Record<string, number>;
  updateLatencies: number[];
}

const perf: DashboardPerf = { firstPaint: {}, firstPaintAt: {}, updateLatencies: [] };
(window as unknown as { __dashboardPerf: DashboardPerf }).__dashboardPerf = perf;

/** Records, once per page load, the time from <paramref name="since"/> to the frame after the page's first data render. */
export function markFirstPaint(name: string, since = 0): void {
  if (name in perf.firstPaint) return;
  perf.firstPaint[name] = -1;
  requestAnimationFrame(() => setTimeout(() => {
    const now = performance.now();
    perf.firstPaint[name] = now - since;
    perf.firstPaintAt[name] = now;
  }));
}

/** Records the time from <paramref name="received"/> (performance.now() when data arrived) to the next frame. */
export function markUpdate(received: number): void {
  requestAnimationFrame(() => setTimeout(() => {
    if (perf.updateLatencies.length < 100_000) perf.updateLatencies.push(performance.now() - received);
  }));
}

export function resetFirstPaint(name: string): void {
  delete perf.firstPaint[name];
  delete perf.firstPaintAt[name];
}
