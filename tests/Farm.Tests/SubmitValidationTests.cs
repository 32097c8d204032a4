using Grpc.Core;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;
using StackExchange.Redis;
using RenderFarm.FarmState;

namespace RenderFarm.Farm.Tests;

[Collection("farm")]
public sealed class SubmitValidationTests(FarmFixture fixture)
{
    private FarmCluster Farm => fixture.Cluster;

    private static JobHeader ValidHeader() => new()
    {
        Params = new GenerationParams { Width = 64, Height = 64, Steps = 4, GuidanceScale = 7.5f },
        Seeds = { 1 },
    };

    public static TheoryData<string, string, int> BadBatches => new()
    {
        // case name, the field the message opens with, number of valid prompts before the problem
        { "empty batch", "prompts", 0 },
        { "width not a multiple of 8", "params.width", 1 },
        { "height not a multiple of 8", "params.height", 1 },
        { "zero steps", "params.steps", 1 },
        { "unknown scheduler", "params.scheduler", 1 },
        { "NaN guidance", "params.guidance_scale", 1 },
        { "negative seed", "seeds", 1 },
        { "empty prompt after many valid ones", "prompts[300].prompt", 300 },
        { "LoRA multipliers adding up past float", "prompts[1].prompt", 1 },
    };

    [Theory]
    [MemberData(nameof(BadBatches))]
    public async Task ABadBatchIsRejectedWithInvalidArgumentNamingTheFieldAndLeavesNothingQueued(string name, string field, int validPrompts)
    {
        var header = ValidHeader();
        var prompts = Enumerable.Range(0, validPrompts).Select(i => new PromptItem { Prompt = $"prompt {i}" }).ToList();
        switch (name)
        {
            case "width not a multiple of 8": header.Params.Width = 100; break;
            case "height not a multiple of 8": header.Params.Height = 60; break;
            case "zero steps": header.Params.Steps = 0; break;
            case "unknown scheduler": header.Params.Scheduler = "warp_drive"; break;
            case "NaN guidance": header.Params.GuidanceScale = float.NaN; break;
            case "negative seed": header.Seeds[0] = -5; break;
            case "empty prompt after many valid ones": prompts.Add(new PromptItem { Prompt = "   " }); break;
            case "LoRA multipliers adding up past float": prompts.Add(new PromptItem { Prompt = "a cat <lora:x:3e38> <lora:x:3e38>" }); break;
        }
        var error = await AssertRejectedLeavingNothingAsync(() => Farm.SubmitAsync(header, prompts), field);
        // The field comes first ("params.width must be ...", "prompts: the batch has no prompts ..."), not just somewhere.
        Assert.Matches($"^{System.Text.RegularExpressions.Regex.Escape(field)}[ :]", error.Status.Detail);
    }

    /// <summary>A valid PNG whose header claims 100000×100000 pixels: a decompression bomb.</summary>
    private static byte[] BombHeader()
    {
        var png = InputImageTests.Gradient(1, 2, 3);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(png.AsSpan(16), 100_000); // IHDR width
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(png.AsSpan(20), 100_000); // IHDR height
        // With its CRC (over "IHDR" and the 13 data bytes) made right: libpng, unlike a bare header parser, checks it.
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(29), System.IO.Hashing.Crc32.HashToUInt32(png.AsSpan(12, 17)));
        return png;
    }

    public static TheoryData<string, string> BadInputImageBatches => new()
    {
        // case name, expected text in the message
        { "prompt names an image never sent", "prompts[1].init_image 'nope' names no input_image" },
        { "mask without init image", "prompts[1].mask_image needs an init_image" },
        { "strength without init image", "prompts[1].strength applies only" },
        { "strength above one", "prompts[1].strength must be in (0, 1]" },
        { "zero strength on a prompt", "prompts[1].strength must be in (0, 1]" },
        { "NaN strength in the header", "params.strength" },
        { "input mode set by the client", "params.input_mode" },
        { "not an image", "is not a PNG or JPEG image" },
        { "JPEG without a frame header", "is not a PNG or JPEG image" },
        { "decompression bomb header", "is 100000x100000, more than the" },
        { "image larger than the byte limit", "is larger than" },
        { "image left unfinished before a prompt", "was not finished" },
        { "stream ends inside an image", "was not finished" },
        { "same name sent twice", "was already sent" },
        { "empty name", "input_image.name" },
    };

    [Theory]
    [MemberData(nameof(BadInputImageBatches))]
    public async Task ABadInitImageOrMaskIsRejectedWithInvalidArgumentAndLeavesNothingBehind(string name, string message)
    {
        var header = ValidHeader();
        var image = InputImageTests.Gradient(90, 90, 90);
        var items = new List<SubmitJobRequest> { InputImageTests.Input("ok", image), InputImageTests.Prompt("fine", init: "ok") };
        switch (name)
        {
            case "prompt names an image never sent": items.Add(InputImageTests.Prompt("x", init: "nope")); break;
            case "mask without init image": items.Add(InputImageTests.Prompt("x", mask: "ok")); break;
            case "strength without init image": items.Add(InputImageTests.Prompt("x", strength: 0.5f)); break;
            case "strength above one": items.Add(InputImageTests.Prompt("x", init: "ok", strength: 1.5f)); break;
            case "zero strength on a prompt": items.Add(InputImageTests.Prompt("x", init: "ok", strength: 0f)); break;
            case "NaN strength in the header": header.Params.Strength = float.NaN; break;
            case "input mode set by the client": header.Params.InputMode = InputMode.Inpaint; break;
            case "not an image": items.Add(InputImageTests.Input("text", "hello, world"u8.ToArray())); break;
            case "JPEG without a frame header": items.Add(InputImageTests.Input("jpeg", [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 0x4A, 0x46])); break;
            case "decompression bomb header": items.Add(InputImageTests.Input("bomb", BombHeader())); break;
            case "image larger than the byte limit":
                // 17 chunks of 1 MiB against the 16 MiB default.
                var chunk = new byte[1 << 20];
                items.AddRange(Enumerable.Range(0, 17).Select(_ => InputImageTests.Input("huge", chunk, more: true)));
                break;
            case "image left unfinished before a prompt":
                items.Add(InputImageTests.Input("half", image[..100], more: true));
                items.Add(InputImageTests.Prompt("x"));
                break;
            case "stream ends inside an image": items.Add(InputImageTests.Input("half", image[..100], more: true)); break;
            case "same name sent twice": items.Add(InputImageTests.Input("ok", image)); break;
            case "empty name": items.Add(InputImageTests.Input("", image)); break;
        }
        await AssertRejectedLeavingNothingAsync(() => Farm.SubmitItemsAsync(header, items), message);
    }

    /// <summary>The submission fails with INVALID_ARGUMENT naming <paramref name="text"/>, and nothing is queued or kept.</summary>
    private async Task<RpcException> AssertRejectedLeavingNothingAsync(Func<Task> submit, string text)
    {
        var queuedBefore = await TaskStreamsAsync();

        var error = await Assert.ThrowsAsync<RpcException>(submit);

        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.Contains(text, error.Status.Detail);
        Assert.Equal(queuedBefore, await TaskStreamsAsync());
        Assert.Empty(await JobKeysOfUnfinishedJobsAsync());
        return error;
    }

    [Fact]
    public async Task AnUnknownJobIdIsNotFoundOnEveryCall()
    {
        foreach (var id in new[] { "aaaaaaaaaaaaaaaa", "../../etc/passwd", "" })
        {
            var get = await Assert.ThrowsAsync<RpcException>(() => Farm.Jobs.GetJobAsync(new GetJobRequest { JobId = id }).ResponseAsync);
            Assert.Equal(StatusCode.NotFound, get.StatusCode);

            using var watch = Farm.Jobs.WatchJob(new WatchJobRequest { JobId = id });
            var watchError = await Assert.ThrowsAsync<RpcException>(() => watch.ResponseStream.MoveNext(CancellationToken.None));
            Assert.Equal(StatusCode.NotFound, watchError.StatusCode);

            using var download = Farm.Jobs.DownloadResults(new DownloadResultsRequest { JobId = id });
            var downloadError = await Assert.ThrowsAsync<RpcException>(() => download.ResponseStream.MoveNext(CancellationToken.None));
            Assert.Equal(StatusCode.NotFound, downloadError.StatusCode);
        }
    }

    /// <summary>
    /// Every task stream in Redis — any model, any priority — with its length and last entry id: an entry added (even
    /// if deleted again) or a stream created shows as a difference.
    /// </summary>
    private async Task<SortedDictionary<string, (long Length, string LastId)>> TaskStreamsAsync()
    {
        var streams = new SortedDictionary<string, (long, string)>(StringComparer.Ordinal);
        // SCAN for the layout's task stream names with any model and priority: tasks:* and {tasks:*}:*
        await foreach (var key in Farm.RedisAdmin.KeysAsync(pattern: "*tasks:*"))
        {
            if (FarmKeys.ParseTaskStream(key!) is null || await Farm.Redis.KeyTypeAsync(key) != RedisType.Stream) continue;
            var info = await Farm.Redis.StreamInfoAsync(key);
            streams[key!] = (info.Length, info.LastGeneratedId!);
        }
        return streams;
    }

    /// <summary>Keys of jobs that have no meta hash: what a half-accepted submission would leave behind.</summary>
    private async Task<List<string>> JobKeysOfUnfinishedJobsAsync()
    {
        var orphans = new List<string>();
        await foreach (var key in Farm.RedisAdmin.KeysAsync(pattern: "{job:*"))
        {
            var name = (string)key!;
            var tag = name[..(name.IndexOf('}') + 1)];
            if (!await Farm.Redis.KeyExistsAsync(tag + ":meta")) orphans.Add(key!);
        }
        return orphans;
    }
}
