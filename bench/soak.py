"""Soak driver for bench/soak.sh (stdlib only): tenants submit, watch, pull, sometimes cancel or delete jobs over the
coordinator's HTTP/JSON API for LOAD seconds while a sampler records Redis used_memory and key count, and the
coordinator's RSS and open file descriptors; then it stops submitting, waits until retention has expired every job,
and samples the idle farm again. Prints the samples and a summary (markdown), and writes them as JSON.

usage: soak.py WEB_URL REDIS_PORT COORDINATOR_PID KEYS_FILE OUT_JSON  (settings in the environment, see soak.sh)
"""
import json, os, random, subprocess, sys, threading, time, urllib.error, urllib.request

web, redis_port, coord_pid, keys_file, out_json = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
metrics_url = sys.argv[6] if len(sys.argv) > 6 else ""
LOAD = float(os.environ.get("LOAD_SECONDS", "300"))
IMAGES = int(os.environ.get("IMAGES_PER_JOB", "4"))
STEPS = int(os.environ.get("STEPS", "4"))
INTERVAL = float(os.environ.get("SAMPLE_SECONDS", "5"))
RETENTION = float(os.environ.get("RETENTION_SECONDS", "10"))
# Open loop at a fixed rate (jobs per second over all tenants) when set, so live keys and the coordinator's work are
# stationary and a memory trend means growth, not throughput; unset, each tenant runs jobs back to back (closed loop).
RATE = float(os.environ.get("JOBS_PER_SECOND", "0"))
CANCEL_SHARE, DELETE_SHARE = 0.05, 0.05
keys = [line.split()[1] for line in open(keys_file) if line.strip()]


def call(method, path, key, body=None, timeout=120, raw=False):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(web + path, data=data, method=method,
                                     headers={"x-api-key": key, "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = response.read()
    return payload if raw else json.loads(payload or b"{}")


def redis(*args):
    return subprocess.run(["redis-cli", "-p", redis_port, *args], capture_output=True, text=True, check=True).stdout


def gc_heap_bytes():
    """The coordinator's managed heap after its last GC (all generations), from its /metrics (System.Runtime meter)."""
    if not metrics_url:
        return 0
    try:
        text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    except OSError:
        return 0
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("dotnet_gc_last_collection_heap_size_bytes")))


def sample(phase, counters):
    info = dict(line.split(":", 1) for line in redis("info", "memory").splitlines() if ":" in line)
    status = dict(line.split(":", 1) for line in open(f"/proc/{coord_pid}/status") if ":" in line)
    return dict(t=round(time.time() - started, 1), phase=phase, used_memory=int(info["used_memory"]),
                used_memory_scripts=int(info.get("used_memory_scripts", "0")), keys=int(redis("dbsize").strip()),
                rss_kib=int(status["VmRSS"].split()[0]), fds=len(os.listdir(f"/proc/{coord_pid}/fd")),
                threads=int(status["Threads"].strip()), gc_heap=gc_heap_bytes(), **counters)


counters = dict(submitted=0, finished=0, pulled_images=0, cancelled=0, deleted=0, errors=0, late=0)
lock = threading.Lock()
stop_submitting = threading.Event()
jobs_alive = {}  # job id -> tenant key, until retention (or a delete) removed it


def count(name, n=1):
    with lock:
        counters[name] += n


def tenant(index, key):
    rng = random.Random(index)
    n = 0
    period = len(keys) / RATE if RATE > 0 else 0.0
    next_at = time.time() + rng.random() * period  # tenants spread over one period
    while not stop_submitting.is_set():
        if period:
            wait = next_at - time.time()
            if wait > 0:
                if stop_submitting.wait(wait):
                    break
            elif wait < -period:
                count("late")  # a slot missed: the farm (or this machine) could not keep the rate; not caught up
                next_at = time.time()
            next_at += period
        n += 1
        job, step = "", "submit"
        try:
            body = {"header": {"params": {"model": "bench", "width": 64, "height": 64, "steps": STEPS}, "seeds": [n],
                               "label": f"soak {index}-{n}"},
                    "prompts": [{"prompt": f"tenant {index} job {n} image {i}"} for i in range(IMAGES)]}
            job = call("POST", "/v1/jobs", key, body)["jobId"]
            count("submitted")
            with lock:
                jobs_alive[job] = key
            roll = rng.random()
            if roll < CANCEL_SHARE:
                step = "cancel"
                call("POST", f"/v1/jobs/{job}:cancel", key, {})
                count("cancelled")
            step = "watch"
            call("GET", f"/v1/jobs/{job}/events", key, raw=True)  # streams the job's events until it finishes
            count("finished")
            step = "pull"
            if roll >= CANCEL_SHARE:
                for image in call("GET", f"/v1/jobs/{job}/images?limit=1000", key).get("images", []):
                    if image.get("state", "") in ("IMAGE_STATE_DONE", "done") or image.get("sha256"):
                        call("GET", f"/v1/jobs/{job}/images/{image.get('index', 0)}", key, raw=True)
                        count("pulled_images")
            if CANCEL_SHARE <= roll < CANCEL_SHARE + DELETE_SHARE:
                step = "delete"
                call("DELETE", f"/v1/jobs/{job}", key)
                count("deleted")
        except (urllib.error.URLError, OSError, KeyError, ValueError) as e:
            count("errors")
            print(f"tenant {index}: {step} of job {job}: {e}", file=sys.stderr)
            time.sleep(0.5)


def exists(job, key):
    try:
        call("GET", f"/v1/jobs/{job}", key, timeout=10)
        return True
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return False
        raise


def key_names():
    return set(redis("--scan").split())


started = time.time()
baseline_keys = key_names()
samples = []
with lock:
    samples.append(sample("baseline", dict(counters)))
threads = [threading.Thread(target=tenant, args=(i, k), daemon=True) for i, k in enumerate(keys)]
for thread in threads:
    thread.start()
next_sample = time.time() + INTERVAL
while time.time() - started < LOAD:
    time.sleep(max(0.0, next_sample - time.time()))
    next_sample += INTERVAL
    with lock:
        samples.append(sample("load", dict(counters)))
stop_submitting.set()
for thread in threads:
    thread.join(timeout=300)
load_end = time.time()
# Expiry: retention has no job left to look at (every job's entry leaves the schedule when its records are deleted),
# then a sample of the jobs is checked to be gone (NOT_FOUND) through the API.
deadline = time.time() + max(120.0, 10 * RETENTION)
while time.time() < deadline:
    with lock:
        samples.append(sample("expiring", dict(counters)))
    if not any(m.startswith("job:") for m in redis("zrange", "retention:due", "0", "-1").split()):
        break
    time.sleep(INTERVAL)
checked = random.Random(0).sample(sorted(jobs_alive), min(500, len(jobs_alive)))
pending = {job: jobs_alive[job] for job in checked if exists(job, jobs_alive[job])}
# The idle farm after expiry: a few samples.
for _ in range(3):
    time.sleep(INTERVAL)
    samples.append(sample("after", dict(counters)))


def slope(points):
    """Least-squares slope of (t, y)."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (y - my) for t, y in points) / var if var else 0.0


extra_keys = sorted(key_names() - baseline_keys)
extra_due = [m for m in redis("zrange", "retention:due", "0", "-1").split()]
base = samples[0]
after = samples[-1]
load = [s for s in samples if s["phase"] == "load"]
# The first third of the load is warm-up (JIT, pools, the first retention periods filling up); the trend is fitted
# over the rest, where the farm is in its steady state.
steady = load[len(load) // 3:]
def third_means(key):
    """Mean of a series over the middle and the last third of the load: equal for a flat series, whatever its noise."""
    mid, last = load[len(load) // 3:2 * len(load) // 3], load[2 * len(load) // 3:]
    mean = lambda xs: sum(s[key] for s in xs) / len(xs) if xs else 0
    return mean(mid), mean(last)


rss_mid, rss_last = third_means("rss_kib")
gc_mid, gc_last = third_means("gc_heap")
gc_slope = slope([(s["t"], s["gc_heap"] / 1024 / 1024) for s in steady]) * 3600
rss_slope = slope([(s["t"], s["rss_kib"] / 1024) for s in steady]) * 3600  # MiB per hour
fds_slope = slope([(s["t"], s["fds"]) for s in steady]) * 3600
mem_slope = slope([(s["t"], s["used_memory"] / 1024 / 1024) for s in steady]) * 3600
summary = dict(
    mode=f"fixed rate {RATE:g} jobs/s" if RATE > 0 else "closed loop", late_slots=counters["late"],
    jobs_per_second_steady=slope([(s["t"], s["submitted"]) for s in steady]),
    rss_last_third_vs_middle_third=rss_last / rss_mid if rss_mid else 0,
    gc_heap_last_third_vs_middle_third=gc_last / gc_mid if gc_mid else 0,
    load_seconds=round(load_end - started, 1), tenants=len(keys), jobs=counters["submitted"], finished=counters["finished"],
    pulled_images=counters["pulled_images"], cancelled=counters["cancelled"], deleted=counters["deleted"], errors=counters["errors"],
    not_expired_of_500_checked=len(pending), retention_periods=round((load_end - started) / RETENTION, 1),
    redis_baseline=base["used_memory"], redis_after=after["used_memory"],
    redis_after_vs_baseline=after["used_memory"] / base["used_memory"],
    redis_peak=max(s["used_memory"] for s in samples), keys_baseline=base["keys"], keys_after=after["keys"],
    keys_peak=max(s["keys"] for s in samples),
    rss_mib_steady_first=steady[0]["rss_kib"] / 1024 if steady else 0, rss_mib_steady_last=steady[-1]["rss_kib"] / 1024 if steady else 0,
    rss_slope_mib_per_hour=rss_slope, gc_heap_slope_mib_per_hour=gc_slope,
    gc_heap_mib_steady_first=steady[0]["gc_heap"] / 1048576 if steady else 0, gc_heap_mib_steady_last=steady[-1]["gc_heap"] / 1048576 if steady else 0, fds_slope_per_hour=fds_slope, redis_slope_mib_per_hour_steady=mem_slope,
    fds_min=min(s["fds"] for s in samples), fds_max=max(s["fds"] for s in samples),
    keys_left_beyond_baseline=extra_keys,
    retention_due_left=dict(kinds=sorted({m.split(":", 1)[0] for m in extra_due}), members=len(extra_due)))
json.dump(dict(samples=samples, summary=summary), open(out_json, "w"), indent=1)

print("| t s | phase | jobs submitted | finished | Redis used_memory MiB | Redis keys | coordinator RSS MiB | GC heap MiB | open fds | threads |")
print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for s in samples:
    print(f"| {s['t']:.0f} | {s['phase']} | {s['submitted']:,} | {s['finished']:,} | {s['used_memory'] / 1048576:.2f} | {s['keys']:,} | "
          f"{s['rss_kib'] / 1024:.0f} | {s['gc_heap'] / 1048576:.1f} | {s['fds']} | {s['threads']} |")
print()
print("```json")
print(json.dumps(summary, indent=1))
print("```")
