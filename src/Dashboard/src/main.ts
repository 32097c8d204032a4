// The dashboard: a hash-routed page (#/jobs, #/job/ID, #/workers, #/models, #/signin) over JobService's HTTP/JSON
// routes. Each page returns a stop function, called when the route changes, that ends its timers and streams.

import { apiKey, caller, signOut } from "./api";
import { el } from "./dom";
import { jobPage } from "./pages/job";
import { jobsPage } from "./pages/jobs";
import { modelsPage } from "./pages/models";
import { signInPage } from "./pages/signin";
import { workersPage } from "./pages/workers";
import type { Caller } from "./types";

export type Stop = () => void;

let stop: Stop = () => {};
let who: Caller | null = null;

async function route(): Promise<void> {
  stop();
  stop = () => {};
  const [, name, arg] = location.hash.split("/");
  if (!apiKey() || name === "signin") {
    who = null;
    renderNav();
    stop = signInPage(async () => { who = await caller(); location.hash = "#/jobs"; });
    return;
  }
  if (!who) {
    try { who = await caller(); } catch { signOut(); location.hash = "#/signin"; return; }
  }
  renderNav(name);
  const admin = seesFleet(who);
  // The fleet's pages are an admin's (the nav offers them to no one else): a client's key typed into #/workers gets its jobs.
  const fleetPage = name === "workers" || name === "models";
  // The old page is stopped already: an address that names no page (a job id that is not valid percent-encoding, say)
  // shows the jobs rather than leaving the stopped page on screen.
  const jobId = name === "job" ? decodedOrNull(arg ?? "") : null;
  switch ((fleetPage && !admin) || (name === "job" && jobId === null) ? "jobs" : name) {
    case "job": stop = jobPage(jobId ?? ""); break;
    case "workers": stop = workersPage(); break;
    case "models": stop = modelsPage(); break;
    default: stop = jobsPage();
  }
}

/** `decodeURIComponent`, or null for text it throws on (a lone or truncated escape such as `%E0%A4`). */
function decodedOrNull(text: string): string | null {
  try { return decodeURIComponent(text); } catch { return null; }
}

/** Admins, and everyone on a farm without keys, see the fleet (Workers, Models). */
function seesFleet(c: Caller): boolean {
  return c.role === "admin" || !!c.authDisabled;
}

function renderNav(current?: string): void {
  const nav = document.getElementById("nav")!;
  const whoBox = document.getElementById("who")!;
  if (!who) { nav.replaceChildren(); whoBox.replaceChildren(); return; }
  const fleet = seesFleet(who);
  const link = (name: string, label: string) => el("a", { href: `#/${name}`, className: current === name || (name === "jobs" && current === "job") ? "current" : "" }, label);
  nav.replaceChildren(link("jobs", "Jobs"), ...(fleet ? [link("workers", "Workers"), link("models", "Models")] : []));
  whoBox.replaceChildren(
    el("span", { className: "muted" }, `${who.tenant} · ${who.role}`),
    el("button", { className: "link", onclick: () => { signOut(); who = null; location.hash = "#/signin"; } }, "Sign out"));
}

window.addEventListener("hashchange", () => void route());
void route();
