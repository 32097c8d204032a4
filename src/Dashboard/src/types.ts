// The JSON forms of renderfarm.v1 messages the dashboard reads (proto3 JSON: lowerCamelCase names, enums as their
// names, 64-bit integers as strings, bytes as base64). Fields at their default value may be absent.

export interface Caller { tenant: string; role: string; authDisabled?: boolean }

export interface GenerationParams {
  model?: string; width?: number; height?: number; steps?: number; guidanceScale?: number; scheduler?: string;
  strength?: number; inputMode?: string; refiner?: string; refinerStart?: number;
}

export interface JobStatus {
  jobId: string; state?: string; params?: GenerationParams; imageCount?: number; imagesDone?: number;
  imagesFailed?: number; shardCount?: number; shardsDone?: number; createdUnixMs?: string; finishedUnixMs?: string;
  label?: string; priority?: string; note?: string; previewEvery?: number;
}

export interface JobImage {
  index?: number; prompt?: string; negativePrompt?: string; seed?: string; state?: string; sha256?: string;
  sizeBytes?: string; error?: string; params?: GenerationParams;
}

export interface ImagePreview { index?: number; shardIndex?: number; step?: number; totalSteps?: number; png?: string; width?: number; height?: number }

export interface JobEvent {
  eventId?: string; unixMs?: string;
  queued?: { imageCount?: number; shardCount?: number };
  shardStarted?: { shardIndex?: number; workerId?: string; imageCount?: number; stage?: string };
  step?: { shardIndex?: number; workerId?: string; step?: number; totalSteps?: number; itPerSec?: number };
  imageDone?: { index?: number; shardIndex?: number; workerId?: string; sha256?: string; imagesDone?: number };
  imageFailed?: { index?: number; shardIndex?: number; error?: string; imagesFailed?: number };
  shardDone?: { shardIndex?: number };
  jobFinished?: { state?: string; imagesDone?: number; imagesFailed?: number };
  stateChanged?: { state?: string };
  attemptFailed?: { shardIndex?: number; workerId?: string; attempt?: number; maxAttempts?: number; error?: string; kind?: string };
  preview?: ImagePreview;
}

export interface WorkerInfo {
  workerId: string; state?: string; models?: string[]; maxBatch?: number; executionProvider?: string; device?: string;
  currentJobId?: string; currentShard?: number; imagesDone?: string; itPerSec?: number; lastSeenUnixMs?: string;
  shardsFailed?: number; memoryBytes?: string; memoryUsedBytes?: string; loading?: string;
}

export interface ModelInfo {
  name: string; workers?: number; shardsWaiting?: string; queued?: { priority?: string; shardsWaiting?: string }[];
}
