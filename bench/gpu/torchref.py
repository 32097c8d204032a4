# PyTorch reference for bench/gpu (a measuring instrument, not product code): the diffusers SD 1.5 UNet and VAE
# decoder with random weights in float16 on the same GPU, eager (SDPA attention) and torch.compile, at the shapes
# GpuBench measures (512², CFG: UNet rows 2, 8, 16 for 1, 4, 8 images). Needs diffusers' src/ on PYTHONPATH.
import json, os, sys, time
t0 = time.time()
import torch
from diffusers import UNet2DConditionModel, AutoencoderKL

def log(text):
    print(f"[torch t={time.time() - t0:5.1f}s] {text}", flush=True)

log(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name(0)}")
UNET = {"act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False,
        "cross_attention_dim": 768, "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], "downsample_padding": 1,
        "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1,
        "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3}
VAE = {"act_fn": "silu", "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
       "up_block_types": ["UpDecoderBlock2D"] * 4, "in_channels": 3, "latent_channels": 4, "layers_per_block": 2,
       "norm_num_groups": 32, "out_channels": 3, "sample_size": 512}
dtype, dev = torch.float16, "cuda"
torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
with torch.device(dev):
    unet = UNet2DConditionModel(**UNET).eval().to(dtype)
    vae = AutoencoderKL(**VAE).eval().to(dtype)
log(f"models built; attention {type(next(iter(unet.attn_processors.values()))).__name__}")

def timeit(fn, warm, n):
    with torch.inference_mode():
        for _ in range(warm):
            fn()
        torch.cuda.synchronize()
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
        for start, end in events:
            start.record(); fn(); end.record()
        torch.cuda.synchronize()
    ms = sorted(a.elapsed_time(b) for a, b in events)
    return {"median_ms": round(ms[n // 2], 3), "min_ms": round(ms[0], 3)}

def unet_inputs(rows):
    return (torch.randn(rows, 4, 64, 64, device=dev, dtype=dtype), torch.full((rows,), 999.0, device=dev, dtype=dtype),
            torch.randn(rows, 77, 768, device=dev, dtype=dtype))

results = {}
torch.cuda.reset_peak_memory_stats()
for rows in (2, 8, 16):
    x, t, c = unet_inputs(rows)
    results[f"eager_unet_rows{rows}"] = timeit(lambda: unet(x, t, c).sample, warm=5, n=20)
    log(f"eager UNet rows {rows}: {results[f'eager_unet_rows{rows}']}")
z = torch.randn(1, 4, 64, 64, device=dev, dtype=dtype)
results["eager_vae_decode_1"] = timeit(lambda: vae.decode(z).sample, warm=3, n=10)
log(f"eager VAE decode 1x4x64x64: {results['eager_vae_decode_1']}")
results["eager_max_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
json.dump(results, open(os.path.join(os.environ.get("OUT", "."), "torch.json"), "w"), indent=1)

budget = float(os.environ.get("TORCH_COMPILE_BUDGET_S", "150"))
if time.time() - t0 < budget:
    compiled = torch.compile(unet)
    x, t, c = unet_inputs(2)
    start = time.time()
    with torch.inference_mode():
        compiled(x, t, c)
    log(f"torch.compile: first call (compilation) {time.time() - start:.1f} s")
    results["compile_unet_rows2"] = timeit(lambda: compiled(x, t, c).sample, warm=5, n=20)
    log(f"torch.compile UNet rows 2: {results['compile_unet_rows2']}")
json.dump(results, open(os.path.join(os.environ.get("OUT", "."), "torch.json"), "w"), indent=1)
log("done")
