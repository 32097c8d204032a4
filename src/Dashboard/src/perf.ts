// Timings the browser test reads (window.__dashboardPerf): when each page first showed its data, and how long live
// updates took from arriving to being painted.

interface DashboardPerf { firstPaint: Record<string, number>; updateLatencies: number[] }

const perf: DashboardPerf = { firstPaint: {}, updateLatencies: [] };
(window as unknown as { __dashboardPerf: DashboardPerf }).__dashboardPerf = perf;

/** Records, once per page load, the time from navigation start to the frame after the page's first data render. */
export function markFirstPaint(name: string, since = 0): void {
  if (name in perf.firstPaint) return;
  perf.firstPaint[name] = -1;
  requestAnimationFrame(() => setTimeout(() => { perf.firstPaint[name] = performance.now() - since; }));
}

/** Records the time from <paramref name="received"/> (performance.now() when data arrived) to the next frame. */
export function markUpdate(received: number): void {
  requestAnimationFrame(() => setTimeout(() => {
    if (perf.updateLatencies.length < 10_000) perf.updateLatencies.push(performance.now() - received);
  }));
}

export function resetFirstPaint(name: string): void {
  delete perf.firstPaint[name];
}
