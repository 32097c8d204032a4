// Small DOM helpers: elements built with properties and children, text always set as text (never parsed as HTML).

import type { GenerationParams } from "./types";

type Child = Node | string | null | undefined | false;

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<Record<string, unknown>> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value as EventListener);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name in node) (node as unknown as Record<string, unknown>)[name] = value;
    else node.setAttribute(name, String(value));
  }
  for (const child of children) if (child !== null && child !== undefined && child !== false) node.append(child);
  return node;
}

export function page(): HTMLElement {
  return document.getElementById("page")!;
}

/** Replaces the page's content. */
export function show(...children: Child[]): void {
  page().replaceChildren(...children.filter((c): c is Node | string => !!c));
}

export function stateName(state: string | undefined, prefix: string): string {
  return (state ?? "").replace(prefix, "").toLowerCase() || "unknown";
}

export function age(unixMs: string | undefined, now = Date.now()): string {
  const ms = Number(unixMs ?? 0);
  if (!ms) return "";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d`;
}

export function bytes(n: string | number | undefined): string {
  let v = Number(n ?? 0);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

export function progressBar(done: number, failed: number, total: number): HTMLElement {
  const pct = (n: number) => (total > 0 ? (100 * n) / total : 0);
  return el("div", { className: "bar", title: `${done} done, ${failed} failed of ${total}` },
    el("span", { className: "done", style: `width:${pct(done)}%` }),
    el("span", { className: "failed", style: `width:${pct(failed)}%` }));
}

export function errorBox(e: unknown): HTMLElement {
  return el("p", { className: "error", role: "alert" }, e instanceof Error ? e.message : String(e));
}

/** " → refiner NAME at 0.8" for a base + refiner job (README "SDXL base + refiner"); "" otherwise. */
export function refinerText(p: GenerationParams): string {
  return p.refiner ? ` → refiner ${p.refiner} at ${p.refinerStart ?? ""}` : "";
}
