// JobService over its HTTP/JSON routes (the coordinator's JSON transcoding of protos/renderfarm/v1/jobs.proto), with
// the API key kept for this browser session only (sessionStorage: gone when the tab closes).

import type { Caller, JobEvent, JobImage, JobStatus, ModelInfo, WorkerInfo } from "./types";

const KeyItem = "renderfarm.apiKey";

export function apiKey(): string | null {
  return sessionStorage.getItem(KeyItem);
}

export function signOut(): void {
  sessionStorage.removeItem(KeyItem);
}

/** A refusal from the coordinator: the HTTP status and the gRPC status's message. */
export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

function headers(): HeadersInit {
  const key = apiKey();
  return key ? { "x-api-key": key } : {};
}

async function check(response: Response): Promise<Response> {
  if (response.ok) return response;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (typeof body?.message === "string") message = body.message;
  } catch {
    // not JSON: keep the status line
  }
  throw new ApiError(response.status, message);
}

async function get<T>(path: string, signal?: AbortSignal): Promise<T> {
  return (await check(await fetch(path, { headers: headers(), signal }))).json() as Promise<T>;
}

async function post<T>(path: string, body: unknown = {}): Promise<T> {
  const response = await fetch(path, {
    method: "POST",
    headers: { ...headers(), "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return (await check(response)).json() as Promise<T>;
}

/** Checks a key (GET /v1/caller) and keeps it for the session if the coordinator accepts it. */
export async function signIn(key: string): Promise<Caller> {
  const response = await fetch("/v1/caller", { headers: { "x-api-key": key } });
  const caller = (await (await check(response)).json()) as Caller;
  sessionStorage.setItem(KeyItem, key);
  return caller;
}

export const caller = () => get<Caller>("/v1/caller");
/** A page of the caller's jobs, newest first: the server pages (ListJobs' page tokens), so a farm of 100k jobs sends 100. */
export interface JobsPage { jobs: JobStatus[]; nextPageToken: string; totalJobs: number }
export const listJobs = (limit: number, pageToken = "", state?: string) =>
  get<{ jobs?: JobStatus[]; nextPageToken?: string; totalJobs?: string }>(
    `/v1/jobs?limit=${limit}&pageToken=${encodeURIComponent(pageToken)}${state ? `&states=${encodeURIComponent(state)}` : ""}`)
    .then((r): JobsPage => ({ jobs: r.jobs ?? [], nextPageToken: r.nextPageToken ?? "", totalJobs: Number(r.totalJobs ?? 0) }));
export const getJob = (id: string) => get<JobStatus>(`/v1/jobs/${encodeURIComponent(id)}`);
export const listImages = (id: string, offset: number, limit: number) =>
  get<{ images?: JobImage[]; imageCount?: number }>(`/v1/jobs/${encodeURIComponent(id)}/images?offset=${offset}&limit=${limit}`);
export const listWorkers = () => get<{ workers?: WorkerInfo[] }>("/v1/workers").then((r) => r.workers ?? []);
export const listModels = () => get<{ models?: ModelInfo[] }>("/v1/models").then((r) => r.models ?? []);
export const releaseWorker = (id: string) => post<WorkerInfo>(`/v1/workers/${encodeURIComponent(id)}:release`);

export type JobAction = "cancel" | "pause" | "resume" | "retry";
export const act = (id: string, action: JobAction) => post<JobStatus>(`/v1/jobs/${encodeURIComponent(id)}:${action}`);

/** A stored image as an object URL (the route needs the key header, so an <img src> cannot fetch it itself). */
export async function imageUrl(id: string, index: number, signal?: AbortSignal): Promise<string> {
  const response = await check(await fetch(`/v1/jobs/${encodeURIComponent(id)}/images/${index}`, { headers: headers(), signal }));
  return URL.createObjectURL(await response.blob());
}

/**
 * WatchJob as streamed JSON: calls onEvent for each event until the job's final event (then resolves), the signal
 * aborts, or the stream breaks (rejects). The body is a sequence of JSON objects; they are split by tracking braces
 * outside strings, so the separator between them (newline, comma, array brackets) does not matter.
 */
export async function watch(id: string, options: { after?: string; previews: boolean; signal: AbortSignal },
                            onEvent: (e: JobEvent) => void): Promise<void> {
  const query = new URLSearchParams({ previews: String(options.previews) });
  if (options.after) query.set("afterEventId", options.after);
  const response = await check(await fetch(`/v1/jobs/${encodeURIComponent(id)}/events?${query}`, { headers: headers(), signal: options.signal }));
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  const splitter = new JsonObjectSplitter();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    for (const text of splitter.push(value)) onEvent(JSON.parse(text) as JobEvent);
  }
}

/** Cuts a character stream of concatenated JSON objects into the objects' texts. */
export class JsonObjectSplitter {
  private buffer = "";
  private depth = 0;
  private inString = false;
  private escaped = false;
  private start = -1;
  private scanned = 0;

  push(chunk: string): string[] {
    this.buffer += chunk;
    const objects: string[] = [];
    for (let i = this.scanned; i < this.buffer.length; i++) {
      const c = this.buffer[i];
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === "\\") this.escaped = true;
        else if (c === '"') this.inString = false;
      } else if (c === '"') {
        this.inString = true;
      } else if (c === "{") {
        if (this.depth++ === 0) this.start = i;
      } else if (c === "}" && --this.depth === 0) {
        objects.push(this.buffer.slice(this.start, i + 1));
        this.start = -1;
      }
    }
    // Keep only the object in progress.
    const keep = this.start >= 0 ? this.start : this.buffer.length;
    this.buffer = this.buffer.slice(keep);
    this.start = this.start >= 0 ? 0 : -1;
    this.scanned = this.buffer.length;
    return objects;
  }
}
