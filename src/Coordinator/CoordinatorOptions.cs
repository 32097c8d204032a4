using System.ComponentModel.DataAnnotations;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.GenerationRules;

namespace RenderFarm.Coordinator;

/// <summary>The coordinator's settings, bound from the <c>Farm</c> configuration section (env: <c>Farm__Redis</c>, ...).</summary>
public sealed class CoordinatorOptions
{
    public const string Section = "Farm";

    /// <summary>StackExchange.Redis connection string.</summary>
    [Required] public string Redis { get; set; } = "127.0.0.1:6379";

    /// <summary>Where PNGs are stored: a directory, or <c>s3://bucket/prefix</c> (then <see cref="S3"/> says where and how).</summary>
    [Required] public string Storage { get; set; } = "results";

    /// <summary>Endpoint, region, credentials and addressing of the S3-compatible store (<c>Farm:S3:*</c>).</summary>
    public Storage.S3StorageOptions S3 { get; set; } = new();

    /// <summary>Model used when a batch names none.</summary>
    [Required] public string DefaultModel { get; set; } = "sd15";

    /// <summary>
    /// Most images per shard: one shard runs as one UNet batch on one worker. Shards are sized to the smallest max batch
    /// of the online workers serving the model, up to this (<see cref="Jobs.ShardSizing"/>). It bounds the work redone
    /// when a worker dies mid-shard; the default matches a worker's default max batch.
    /// </summary>
    [Range(1, 256)] public int ShardSize { get; set; } = 8;

    /// <summary>
    /// Deliveries of a shard before its images are marked failed (dead letter). Every delivery counts: one that failed,
    /// and one whose worker crashed, hung or was cut off (its lease lapsed). Stamped on each shard when it is queued.
    /// </summary>
    [Range(1, 100)] public int MaxAttempts { get; set; } = ShardEntry.DefaultMaxAttempts;

    /// <summary>
    /// Price of one hour of worker device time, in whatever currency you bill in; 0 (the default): no cost shown, only
    /// device seconds. A job's cost is its images' device seconds × this / 3600.
    /// </summary>
    [Range(0, 1e9)] public double CostPerDeviceHour { get; set; }

    /// <summary>What <paramref name="deviceSeconds"/> cost at <see cref="CostPerDeviceHour"/> (0 when none is set).</summary>
    public double CostOf(double deviceSeconds) => Math.Round(deviceSeconds * CostPerDeviceHour / 3600, 6);

    /// <summary>A worker not heard from for this long is shown offline.</summary>
    [Range(1, 3600)] public int WorkerTimeoutSeconds { get; set; } = 30;

    /// <summary>A worker that fails this many shards within <see cref="QuarantineWindowSeconds"/> gets no more work.</summary>
    [Range(1, 1000)] public int QuarantineAfterFailures { get; set; } = 3;
    [Range(1, 86_400)] public int QuarantineWindowSeconds { get; set; } = 600;

    /// <summary>
    /// Each worker connection's first this many results are decoded in full (their image data inflated to the last
    /// row); after that one in <see cref="ResultDecodeOneIn"/>, picked at random, and every one once a result of the
    /// connection was refused. The others have their structure checked (<see cref="Jobs.ResultCheck"/>).
    /// </summary>
    [Range(0, int.MaxValue)] public int ResultDecodeFirst { get; set; } = 32;

    /// <summary>After <see cref="ResultDecodeFirst"/>, one result in this many is decoded in full; 1: every result.</summary>
    [Range(1, int.MaxValue)] public int ResultDecodeOneIn { get; set; } = 16;

    /// <summary>Step progress of one shard is written at most this often (first and last step always).</summary>
    [Range(0, 60_000)] public int ProgressIntervalMilliseconds { get; set; } = 100;

    /// <summary>
    /// A watcher of a quiet job is woken by pub/sub when its next event is written; it also reads again after this
    /// long without one, since pub/sub messages are lost while a connection is down.
    /// </summary>
    [Range(10, 600_000)] public int WatchFallbackMilliseconds { get; set; } = 2_000;

    [Range(1, int.MaxValue)] public int MaxImagesPerJob { get; set; } = 1_000_000;
    [Range(1, 1_000_000)] public int MaxPromptLength { get; set; } = 4_000;
    /// <summary>Largest image side accepted; at most <see cref="ImageSizeRule.MaxSide"/>, the most the pipeline renders.</summary>
    [Range(ImageSizeRule.Multiple, ImageSizeRule.MaxSide)] public int MaxImageSide { get; set; } = 2_048;
    /// <summary>
    /// Largest side of a finished image, after hires fix and upscaling (a 2048² render upscaled 4× is 8192²); the
    /// sides the models render stay within <see cref="MaxImageSide"/>.
    /// </summary>
    [Range(ImageSizeRule.Multiple, ImageSizeRule.MaxSide)] public int MaxOutputSide { get; set; } = ImageSizeRule.MaxSide;
    [Range(1, 10_000)] public int MaxSteps { get; set; } = 150;
    [Range(1, 100)] public int MaxImagesPerPrompt { get; set; } = 16;
    [Range(1, 1_000)] public int MaxSeedsPerPrompt { get; set; } = 100;

    /// <summary>Bytes of one init image or mask as sent (PNG/JPEG).</summary>
    [Range(1, int.MaxValue)] public int MaxInputImageBytes { get; set; } = 16 * 1024 * 1024;

    /// <summary>
    /// Decoded pixels of one init image or mask, read from its header before anything is stored: a small file that
    /// claims huge dimensions (a decompression bomb) is refused without decoding it.
    /// </summary>
    [Range(1, long.MaxValue)] public long MaxInputImagePixels { get; set; } = 4096L * 4096L;

    /// <summary>
    /// Distinct init images and masks of one job, in bytes. They live in Redis with the job (workers read them from
    /// there), so this bounds the Redis memory one submission can take; split larger img2img batches.
    /// </summary>
    [Range(1, long.MaxValue)] public long MaxInputBytesPerJob { get; set; } = 256L * 1024 * 1024;

    /// <summary>
    /// Live previews one job holds in Redis, in bytes: the latest preview of each image still rendering (a latent-size
    /// PNG, ~12 KiB at 512x512; an image-size one from a model's tiny decoder, ~0.1–0.4 MiB). Past it, images without a
    /// preview get none until others finish.
    /// </summary>
    [Range(1, 1L << 30)] public long PreviewBytesPerJob { get; set; } = 4L * 1024 * 1024;

    /// <summary>
    /// Jobs one ListJobs call examines at most (a page of the tenant's index, newest first): with a state filter that
    /// matches few of many jobs, a call answers a short page and a token to go on instead of reading the whole index.
    /// </summary>
    [Range(1, 1_000_000)] public int ListJobsExaminedPerPage { get; set; } = 2000;

    /// <summary>Live previews are stored (and sent to watchers) at most this often per shard.</summary>
    [Range(0, 60_000)] public int PreviewIntervalMilliseconds { get; set; } = 250;
}
