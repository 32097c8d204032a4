#!/usr/bin/env python3
"""What the farm adds per image (bench/farm-overhead.md).

The same images rendered alone (bench/OverheadBench: the worker's renderer in one process, PNGs written to a folder)
and through the farm (Redis, coordinator, worker, `farm submit --watch --out`), rounds interleaved (the order flips
every round), for the real tiny model and for a synthetic renderer of fixed per-step cost standing in for a GPU
(SyntheticRenderer, `synthetic:MS:textured`: 512² PNGs of a real render's size). Then 1 → N synthetic workers.
With S3=1, also the synthetic 512² scenario against an S3 store (s3rver), results uploaded through the coordinator vs
straight to S3 by the workers (Farm:S3:DirectUploads), two farms side by side, rounds interleaved.

Reports per scenario (medians over the rounds; ratios come from this one run):
  overhead ms/image   (farm end-to-end wall − alone wall) / images; end to end = the `farm` process, submit to the
                      last PNG downloaded
  device busy         renderer time / wall: alone, in the job (created → finished), and end to end
  coordinator / Redis CPU ms per image, while the job ran (submit → finished) and for the whole round (with the
                      download): /proc/PID/stat utime+stime; Redis INFO used_cpu_user + used_cpu_sys
  S3 server CPU       (S3=1) ms per image in the job, /proc/PID/stat of the s3rver (or moto) process

  bench/farm-overhead.py                # builds (Release), ~5 minutes on a 2-core machine
  NO_BUILD=1 ROUNDS=5 bench/farm-overhead.py
Environment: ROUNDS (3), SHARD (8), TINY_IMAGES (48), TINY_STEPS (8), TINY_SIZE (64x64), SYN_MS (20), SYN_STEPS
("4 1"), SYN_IMAGES (128), SYN_SIZE (512x512), SCALE_WORKERS (8: 1 → N), SCALE_SHARDS (16 per worker), SCALE_STEPS (4),
NATIVE (a published `farm`; default: scripts/install-farm.sh --publish-only), TINY_MODEL (default .farm/models/tiny),
SKIP_SCALE=1, SKIP_TINY=1, SKIP_SYN=1 (the synthetic scenarios; SYN_STEPS= skips them too, but S3=1 takes its steps
from SYN_STEPS), S3=1 (the S3 store scenario, off by default: the first of SYN_STEPS; needs node, and installs s3rver with
npm ci in tests/Farm.Tests/Storage/s3server when missing), S3_SERVER=moto (moto_server from PATH instead of s3rver: with
conditional writes, as AWS, MinIO and R2 have them), WARM (20: warm-up rounds of each kind before measuring; fewer leave the JIT re-compiling in the measured rounds), IDLE_SETTLE (20: seconds the farm is left to settle
after warm-up before its idle CPU is measured over IDLE_SECONDS, 5), COORDINATOR_DLL and WORKER_DLL (another build's coordinator and worker, e.g. copies of an older
commit's bin/Release/net10.0, for before/after), S3_BASE_DLL (with S3=1: both S3 farms upload directly, the first with
this coordinator build), S3_BASE_ENV (with S3_BASE_DLL: "K=V K=V" for that first farm's coordinator alone, e.g. the
same build with a runtime setting: before/after of a setting), COORDINATOR_ENV ("K=V K=V": runtime settings for the coordinator alone,
e.g. DOTNET_gcServer=0), SCRATCH (where each round's PNGs are written and deleted; default a folder in /dev/shm).
"""
import json, os, shutil, socket, statistics, subprocess, sys, tempfile, threading, time, urllib.error, urllib.request
from datetime import datetime

root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
env = os.environ
ROUNDS = int(env.get("ROUNDS", 3)); SHARD = int(env.get("SHARD", 8))
TINY_IMAGES = int(env.get("TINY_IMAGES", 48)); TINY_STEPS = int(env.get("TINY_STEPS", 8)); TINY_SIZE = env.get("TINY_SIZE", "64x64")
SYN_MS = int(env.get("SYN_MS", 20)); SYN_STEPS = [int(s) for s in env.get("SYN_STEPS", "4 1").split()]
SYN_IMAGES = int(env.get("SYN_IMAGES", 128)); SYN_SIZE = env.get("SYN_SIZE", "512x512")
IDLE_SETTLE = float(env.get("IDLE_SETTLE", 20)); IDLE_SECONDS = float(env.get("IDLE_SECONDS", 5))
WARM = int(env.get("WARM", 20))
SCALE_WORKERS = int(env.get("SCALE_WORKERS", 8)); SCALE_SHARDS = int(env.get("SCALE_SHARDS", 16)); SCALE_STEPS = int(env.get("SCALE_STEPS", 4))

def dll(project, name): return f"{root}/src/{project}/bin/Release/net10.0/{name}.dll"
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port
def run(cmd, **kw): return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout

state = tempfile.mkdtemp(prefix="farm-overhead.")
# Each round's PNGs (alone and downloaded) are deleted before the next. On a file system that scans recently deleted
# inodes when it allocates one (ext4 without a journal: recently_deleted() in find_inode_bit, this VM's disk), that
# churn made every file the coordinator's store creates cost ~0.5 ms of kernel CPU. The bench's own files are not the
# farm's cost: they go to SCRATCH (default: a folder in /dev/shm where there is one); the store stays in `state`.
scratch = tempfile.mkdtemp(prefix="farm-overhead-out.", dir=env.get("SCRATCH") or ("/dev/shm" if os.path.isdir("/dev/shm") else None))
procs = []
def stop(ps):
    for p in ps: p.terminate()
    for p in ps:
        try: p.wait(10)
        except subprocess.TimeoutExpired: p.kill()
def start(cmd, log, extra_env=None):
    p = subprocess.Popen(cmd, stdout=open(f"{state}/{log}", "w"), stderr=subprocess.STDOUT, env={**env, **(extra_env or {})})
    procs.append(p); return p
def wait_for(check, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if check(): return
        except Exception: pass
        time.sleep(0.2)
    sys.exit(f"timed out waiting for {what}; logs in {state}")

def build():
    if env.get("NO_BUILD") == "1": return
    print("==> building (Release)", file=sys.stderr)
    for p in ["src/Coordinator", "src/Worker", "src/Client", "src/ModelBuilder", "bench/OverheadBench"]:
        run(["dotnet", "build", p, "-c", "Release", "-v", "quiet", "-nologo", "-clp:ErrorsOnly"], cwd=root)

def stat_cpu_s(path):
    with open(path) as f: fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime + stime
def cpu_s(pid): return stat_cpu_s(f"/proc/{pid}/stat")
def schedstat_s(path):
    with open(path) as f: return int(f.read().split()[0]) / 1e9   # time on a CPU, ns (not whole 10 ms ticks as in stat)

class ThreadCpu:
    """A process's CPU to the nanosecond, all threads and those whose name starts with `part` apart, from each thread's
    schedstat: /proc/PID/stat counts whole clock ticks (10 ms: 0.08 ms/image over 128 images, the size of the changes
    measured). Each thread's last figure is kept, so a thread that has exited still counts."""
    def __init__(self, pid, part):
        self.pid, self.part, self.seen, self.named = pid, part, {}, {}
    def read(self):
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            try:
                if tid not in self.named:
                    with open(f"/proc/{self.pid}/task/{tid}/comm") as f: self.named[tid] = f.read().startswith(self.part)
                self.seen[tid] = schedstat_s(f"/proc/{self.pid}/task/{tid}/schedstat")
            except (FileNotFoundError, ProcessLookupError): pass   # exited between the listing and the read
        return sum(self.seen.values()), sum(v for t, v in self.seen.items() if self.named.get(t))

class Farm:
    """Redis, a coordinator (its settings plus `coord_env`) and workers on ports of their own; `name` prefixes the logs."""
    def __init__(self, name="", coord_env=None, coord_dll=None):
        self.name, self.redis_port, self.coord_port = name, free_port(), free_port()
        start(["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", state, "--save", "", "--appendonly", "no"], f"{name}redis.log")
        wait_for(lambda: run(["redis-cli", "-p", str(self.redis_port), "ping"]).strip() == "PONG", 20, f"{name}redis")
        self.coord = start(["dotnet", coord_dll or env.get("COORDINATOR_DLL") or dll("Coordinator", "RenderFarm.Coordinator")], f"{name}coordinator.log", {
            "Farm__Redis": f"127.0.0.1:{self.redis_port}", "Farm__Auth__Mode": "Disabled", "Farm__Storage": f"{state}/results",
            "Farm__DefaultModel": "tiny", "Farm__ShardSize": str(SHARD), "Farm__MaxImagesPerJob": "1000000",
            "Kestrel__Endpoints__Grpc__Url": f"http://127.0.0.1:{self.coord_port}", "Logging__LogLevel__Default": "Warning",
            **(coord_env or {}), **dict(kv.split("=", 1) for kv in env.get("COORDINATOR_ENV", "").split())})
        self.threads = ThreadCpu(self.coord.pid, ".NET Tiered Com")
        wait_for(lambda: self.cli("jobs") is not None, 90, f"{name}coordinator")
    def cli(self, *args, **kw): return run([native, "--coordinator", f"http://127.0.0.1:{self.coord_port}", *args], **kw)
    def start_worker(self, n, models):
        start(["dotnet", env.get("WORKER_DLL") or dll("Worker", "RenderFarm.Worker")], f"{self.name}worker-{n}.log", {
            "Farm__Redis": f"127.0.0.1:{self.redis_port}", "Farm__Coordinator": f"http://127.0.0.1:{self.coord_port}",
            "Farm__WorkerId": f"bench-{n}", "Urls": "http://127.0.0.1:0", "Logging__LogLevel__Default": "Warning",
            **{f"Farm__Models__{k}": v for k, v in models.items()}})
    def wait_idle(self, count):
        wait_for(lambda: sum(w["state"] == "idle" for w in json.loads(self.cli("workers", "--json"))) >= count, 300, f"{count} idle workers")
    def coord_cpu_s(self):
        """The coordinator's CPU, and of it its background JIT's (threads named ".NET Tiered Com": re-compiling hot
        methods at tier 1, work a long-running coordinator has finished but a short bench still pays for)."""
        return self.threads.read()
    def redis_cpu_s(self):
        info = dict(l.split(":", 1) for l in run(["redis-cli", "-p", str(self.redis_port), "info", "cpu"]).splitlines() if ":" in l)
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

class CpuSampler:
    """Samples coordinator and Redis CPU (and `pids`', e.g. s3rver's) every 20 ms, so the round can be split at the
    job's finish time."""
    def __init__(self, f, pids=()):
        self.f, self.pids, self.samples, self.stop = f, pids, [], threading.Event()
        self.thread = threading.Thread(target=self.loop); self.thread.start()
    def sample(self):
        coord, jit = self.f.coord_cpu_s()
        self.samples.append((time.time(), coord, self.f.redis_cpu_s(), jit, *map(cpu_s, self.pids)))
    def loop(self):
        while not self.stop.is_set(): self.sample(); self.stop.wait(0.02)
    def end(self): self.stop.set(); self.thread.join(); self.sample(); return self
    def at(self, t): return next((s for s in self.samples if s[0] >= t), self.samples[-1])

def iso(v): return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()

def farm_round(fm, model, images, steps, size, label, pids=()):
    prompts = f"{state}/prompts.txt"
    with open(prompts, "w") as f: f.writelines(f"bench prompt {i + 1}\n" for i in range(images))
    out = f"{scratch}/out"; shutil.rmtree(out, ignore_errors=True)
    cpu = CpuSampler(fm, pids)
    t0 = time.time()
    job = fm.cli("submit", prompts, "--model", model, "--size", size, "--steps", str(steps), "--seed", "1", "--watch", "--out", out).strip().splitlines()[0]
    wall = time.time() - t0
    cpu.end()
    status = json.loads(fm.cli("status", job, "--json"))
    assert status["images_done"] == images and len(os.listdir(out)) >= images, status
    job_wall = iso(status["finished"]) - iso(status["created"])
    first, done, last = cpu.samples[0], cpu.at(iso(status["finished"])), cpu.samples[-1]
    return dict(wall=wall, job_wall=job_wall, device=status["device_seconds"],
                coord_job=done[1] - first[1], redis_job=done[2] - first[2], coord_all=last[1] - first[1], redis_all=last[2] - first[2],
                jit_job=done[3] - first[3], pids_job=[done[i] - first[i] for i in range(4, len(done))])

def alone_round(spec, images, steps, size):
    out = f"{scratch}/alone"; shutil.rmtree(out, ignore_errors=True)
    line = run(["dotnet", f"{root}/bench/OverheadBench/bin/Release/net10.0/OverheadBench.dll", "--model", spec, "--images", str(images),
                "--batch", str(SHARD), "--steps", str(steps), "--size", size, "--out", out]).strip().splitlines()[-1]
    r = json.loads(line); return dict(wall=r["wall_s"], device=r["device_s"])

def walls(rows, key): return " ".join("%.3f" % r[key] for r in rows)
def med(rows, key): return statistics.median(r[key] for r in rows)
def scenario(label, model, spec, images, steps, size):
    alone, through = [], []
    for n in range(ROUNDS):
        for side in (["alone", "farm"] if n % 2 == 0 else ["farm", "alone"]):
            if side == "alone": alone.append(alone_round(spec, images, steps, size))
            else: through.append(farm_round(main, model, images, steps, size, label))
    a, f = med(alone, "wall"), med(through, "wall")
    per = lambda key: med(through, key) / images * 1000
    print(f"\n## {label}: {images} images, {steps} steps, {size}, shard {SHARD}, {ROUNDS} rounds interleaved")
    print(f"alone wall s         {walls(alone, 'wall')}   (median {a:.3f})")
    print(f"farm wall s (e2e)    {walls(through, 'wall')}   (median {f:.3f}; in the job {walls(through, 'job_wall')})")
    print(f"farm / alone         {f / a:.3f}x;  overhead {(f - a) / images * 1000:.2f} ms/image end to end, "
          f"{(med(through, 'job_wall') - a) / images * 1000:.2f} ms/image in the job")
    print(f"device busy          alone {statistics.median(r['device'] / r['wall'] for r in alone):.3f}; farm in the job "
          f"{statistics.median(r['device'] / r['job_wall'] for r in through):.3f}, end to end {statistics.median(r['device'] / r['wall'] for r in through):.3f}")
    net = lambda key, rate: statistics.median((r[key] - rate * r["job_wall"]) / images * 1000 for r in through)
    print(f"coordinator CPU      {per('coord_job'):.3f} ms/image in the job (net of idle {net('coord_job', idle_coord):.3f}), "
          f"{per('coord_all'):.3f} with the download")
    print(f"  of which the JIT   {per('jit_job'):.3f} ms/image in the job (background tier-1 compiler); without it "
          f"{statistics.median((r['coord_job'] - r['jit_job']) / images * 1000 for r in through):.3f}")
    print(f"Redis CPU            {per('redis_job'):.3f} ms/image in the job (net of idle {net('redis_job', idle_redis):.3f}), "
          f"{per('redis_all'):.3f} with the download")
    sys.stdout.flush()

def idle_rates(settle):
    """Coordinator and Redis CPU per second of a farm doing nothing, measured over IDLE_SECONDS after `settle` seconds
    of nothing (whose rates are returned too, to show the tail left out)."""
    def window(seconds):
        w = CpuSampler(main); time.sleep(seconds); w.end()
        span = w.samples[-1][0] - w.samples[0][0]
        return [(w.samples[-1][i] - w.samples[0][i]) / span for i in (1, 2)]
    tail = window(settle)
    return window(IDLE_SECONDS), tail

def s3_scenario(steps):
    """The synthetic 512² scenario against an S3 store, results through the coordinator vs straight from the workers.
    No alone rounds: the scenarios above measure alone vs farm; this one compares two ways of the farm's."""
    s3dir = f"{root}/tests/Farm.Tests/Storage/s3server"; s3rver = f"{s3dir}/node_modules/s3rver/bin/s3rver.js"
    if not os.path.exists(s3rver): run(["npm", "ci", "--no-audit", "--no-fund"], cwd=s3dir)
    port = free_port(); endpoint = f"http://127.0.0.1:{port}"
    first = len(procs)   # what this scenario starts is stopped at its end: its idle farms would load the scaling rounds
    # S3_SERVER=moto: moto_server (where installed) takes If-None-Match, so the store runs with conditional writes, as
    # on AWS, MinIO or R2; s3rver ignores the header (the store then reads before it writes).
    moto = env.get("S3_SERVER") == "moto"
    s3 = (start(["moto_server", "-H", "127.0.0.1", "-p", str(port)], "moto.log") if moto else
          start(["node", s3rver, "-d", f"{state}/s3rver", "-a", "127.0.0.1", "-p", str(port), "--silent", "--no-vhost-buckets"], "s3rver.log"))
    def answers():
        try: urllib.request.urlopen(endpoint, timeout=2)
        except urllib.error.HTTPError: pass   # any status will do: it is up
        return True
    wait_for(answers, 30, "s3rver")
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/farm", method="PUT"), timeout=10)   # s3rver checks no signature here
    s3_env = {"Farm__Storage": "s3://farm/results", "Farm__S3__Endpoint": endpoint, "Farm__S3__AccessKey": "S3RVER",
              "Farm__S3__SecretKey": "S3RVER", "Farm__S3__UsePathStyle": "true",
              "Farm__S3__ConditionalWrites": "true" if moto else "false"}
    # A coordinator's settings are fixed at its start: one whole farm per mode, both up front, so rounds interleave
    # without restarts (and neither farm shares Redis, or a worker, with the other).
    # S3_BASE_DLL: both farms upload directly, one with another build's coordinator (before/after of a change there).
    base = env.get("S3_BASE_DLL")
    modes = {"direct, base": ("true", base), "direct": ("true", None)} if base else {"via coordinator": ("false", None), "direct": ("true", None)}
    base_env = dict(kv.split("=", 1) for kv in env.get("S3_BASE_ENV", "").split()) if base else {}
    # A coordinator takes direct uploads only with conditional writes (it refuses to start otherwise). s3rver ignores
    # If-None-Match, which changes nothing here: the bench writes each image once.
    direct_env = {"Farm__S3__DirectUploads": "true", "Farm__S3__ConditionalWrites": "true"}
    farms = {m: Farm(f"s3-{m.split()[0].strip(',')}{'-base' if d else ''}-",
                     {**s3_env, **(direct_env if u == "true" else {"Farm__S3__DirectUploads": u}), **(base_env if d else {})}, d)
             for m, (u, d) in modes.items()}
    for fm in farms.values(): fm.start_worker(1, {"syn": syn})
    for fm in farms.values(): fm.wait_idle(1)
    order = list(modes)
    for _ in range(WARM):  # each coordinator past the JIT's tiering, as the main farm's warm-up rounds do
        for m in order: farm_round(farms[m], "syn", 4 * SHARD, 1, SYN_SIZE, "warm", [s3.pid])
    rows = {m: [] for m in modes}
    for n in range(ROUNDS):
        for m in (order if n % 2 == 0 else order[::-1]):
            rows[m].append(farm_round(farms[m], "syn", SYN_IMAGES, steps, SYN_SIZE, m, [s3.pid]))
    print(f"\n## S3 store ({'moto' if moto else 's3rver'}): synthetic {SYN_MS} ms/step, textured, {SYN_IMAGES} images, {steps} steps, {SYN_SIZE}, "
          f"shard {SHARD}, {ROUNDS} rounds interleaved, no alone rounds")
    for m, through in rows.items():
        per = lambda key: med(through, key) / SYN_IMAGES * 1000
        print(f"{m}")
        print(f"  farm wall s (e2e)  {walls(through, 'wall')}   (median {med(through, 'wall'):.3f}; in the job {walls(through, 'job_wall')})")
        print(f"  device busy        in the job {statistics.median(r['device'] / r['job_wall'] for r in through):.3f}, "
              f"end to end {statistics.median(r['device'] / r['wall'] for r in through):.3f}")
        print(f"  coordinator CPU    {per('coord_job'):.3f} ms/image in the job, {per('coord_all'):.3f} with the download; without the JIT "
              f"{statistics.median((r['coord_job'] - r['jit_job']) / SYN_IMAGES * 1000 for r in through):.3f} in the job")
        print(f"  Redis CPU          {per('redis_job'):.3f} ms/image in the job, {per('redis_all'):.3f} with the download")
        print(f"  S3 server CPU      {statistics.median(r['pids_job'][0] for r in through) / SYN_IMAGES * 1000:.3f} ms/image in the job")
    first_mode = next(iter(modes))
    via, direct = rows[first_mode], rows["direct"]
    ratios = [d["coord_job"] / v["coord_job"] for v, d in zip(via, direct)]
    print(f"direct / {first_mode}, coordinator CPU in the job: {med(direct, 'coord_job') / med(via, 'coord_job'):.3f} (medians); "
          f"per round {' '.join('%.3f' % x for x in ratios)} (range {min(ratios):.3f}–{max(ratios):.3f})")
    sys.stdout.flush()
    stop(procs[first:])

try:
    build()
    native = env.get("NATIVE") or run(["bash", f"{root}/scripts/install-farm.sh", "--publish-only", f"{state}/native"]).strip().splitlines()[-1]
    tiny = env.get("TINY_MODEL", f"{root}/.farm/models/tiny")
    if not os.path.exists(f"{tiny}/model_index.json"):
        run(["dotnet", dll("ModelBuilder", "RenderFarm.ModelBuilder"), "create", "tiny", "--out", tiny])
    main = Farm()
    syn, scale = f"synthetic:{SYN_MS}:textured", f"synthetic:{SYN_MS}"
    main.start_worker(1, {"tiny": tiny, "syn": syn, "scale1": scale, "scale": scale})
    main.wait_idle(1)
    with open("/proc/loadavg") as f: load = " ".join(f.read().split()[:3])
    print(f"# {os.cpu_count()} cores, load average {load}, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; "
          f"Redis {run(['redis-server', '--version']).split()[2]}, no AOF; prefetch: worker default")
    syn_steps = SYN_STEPS if env.get("SKIP_SYN") != "1" else []
    if env.get("SKIP_TINY") != "1" or env.get("SKIP_SYN") != "1":   # only their scenarios use these (scaling warms up itself)
        for _ in range(WARM):  # past the JIT's tiering: the first rounds of a fresh coordinator cost several times the later ones
            farm_round(main, "tiny", 2 * SHARD, TINY_STEPS, TINY_SIZE, "warm"); farm_round(main, "syn", 4 * SHARD, 1, SYN_SIZE, "warm")
        # What the farm spends doing nothing (timers, worker polls), once warm: the per-image figures below include it
        # for the job's wall time; "net" takes it out. Measured only once the last round's tail has passed (tier-1 JIT,
        # background GC, the results' file writes): seconds right after a job showed 180-370 ms CPU/s, a settled farm 5-16.
        (idle_coord, idle_redis), tail = idle_rates(IDLE_SETTLE)
        print(f"# idle farm (1 worker): coordinator {idle_coord * 1000:.1f} ms CPU/s, Redis {idle_redis * 1000:.1f} ms CPU/s, "
              f"measured over {IDLE_SECONDS:g} s after {IDLE_SETTLE:g} s of settling (those: {tail[0] * 1000:.1f} and {tail[1] * 1000:.1f})")
    if env.get("SKIP_TINY") != "1": scenario("tiny model", "tiny", tiny, TINY_IMAGES, TINY_STEPS, TINY_SIZE)
    for steps in syn_steps:
        scenario(f"synthetic {SYN_MS} ms/step, textured", "syn", syn, SYN_IMAGES, steps, SYN_SIZE)
    if env.get("S3") == "1": s3_scenario(SYN_STEPS[0] if SYN_STEPS else 4)

    if env.get("SKIP_SCALE") == "1": sys.exit(0)
    # 1 → N workers: model "scale1" is held by worker 1 alone, "scale" by all N.
    for n in range(2, SCALE_WORKERS + 1): main.start_worker(n, {"scale": scale})
    main.wait_idle(SCALE_WORKERS)
    # The new workers past their own JIT first, as the first worker was by the warm-up rounds above.
    for _ in range(WARM):
        farm_round(main, "scale", SCALE_WORKERS * SHARD * SCALE_SHARDS, SCALE_STEPS, "64x64", "warm")
    rates = {1: [], SCALE_WORKERS: []}
    for r in range(ROUNDS):
        for n in ([1, SCALE_WORKERS] if r % 2 == 0 else [SCALE_WORKERS, 1]):
            images = n * SHARD * SCALE_SHARDS
            res = farm_round(main, "scale1" if n == 1 else "scale", images, SCALE_STEPS, "64x64", f"scale{n}")
            rates[n].append(images / res["job_wall"])
    one, many = statistics.median(rates[1]), statistics.median(rates[SCALE_WORKERS])
    ideal = SHARD / (SCALE_STEPS * SYN_MS / 1000)
    print(f"\n## scaling: synthetic {SYN_MS} ms × {SCALE_STEPS} steps, 64x64, {SCALE_SHARDS} shards of {SHARD} per worker, {ROUNDS} rounds")
    print(f"1 worker             {' '.join('%.1f' % x for x in rates[1])} images/s in the job (median {one:.1f}; ideal {ideal:.1f})")
    print(f"{SCALE_WORKERS} workers            {' '.join('%.1f' % x for x in rates[SCALE_WORKERS])} images/s (median {many:.1f})")
    print(f"1 → {SCALE_WORKERS}: {many / one:.2f}x = {many / one / SCALE_WORKERS:.3f} of linear")
finally:
    stop(procs)
    shutil.rmtree(scratch, ignore_errors=True)
    if env.get("KEEP") != "1": shutil.rmtree(state, ignore_errors=True)
