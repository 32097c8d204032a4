using RenderFarm.Coordinator.Diagnostics;

namespace RenderFarm.Coordinator.Storage;

/// <summary>
/// <c>PUT /uploads/JOB/INDEX?sha256=…&amp;size=…&amp;expires=…&amp;signature=…</c>: where workers put results into the
/// directory store (<see cref="FileSystemStorageOptions.UploadUrl"/>). No API key: the signed URL is the authority, and
/// it admits exactly the granted bytes as that one image. Answers as S3 does to a conditional PUT: 200 stored, 412 an
/// image is stored already (the worker reports it found stored, and the coordinator checks what is there), 403 a URL
/// that is not valid, 400 bytes other than granted (nothing is stored).
/// </summary>
public static class FileSystemUploadEndpoint
{
    public static void MapResultUploads(this WebApplication app)
    {
        if (app.Services.GetRequiredService<IResultStore>() is not FileSystemResultStore { CanTakeUploads: true } store) return;
        var signature = store.Signature!;
        var log = new ThrottledLog(app.Services.GetRequiredService<ILoggerFactory>(), typeof(FileSystemUploadEndpoint).FullName!);
        app.MapPut(UploadSignature.RoutePrefix + "/{jobId}/{index}", async (HttpContext context, string jobId, uint index) =>
        {
            if (!Jobs.JobIds.IsWellFormed(jobId)) return Results.NotFound();
            var query = context.Request.Query;
            var grant = signature.Check(jobId, index, query["sha256"], query["size"], query["expires"], query["signature"]);
            var outcome = await store.TakeUploadAsync(jobId, index, grant, context.Request.ContentLength, context.Request.BodyReader, context.RequestAborted);
            if (outcome.Stored) return Results.Ok();
            if (outcome.AlreadyStored) return Results.StatusCode(StatusCodes.Status412PreconditionFailed);
            log.Warn("upload", $"Refused an upload of image {index} of job {jobId} from {context.Connection.RemoteIpAddress}: {outcome.Refusal}");
            return grant.Refusal is not null ? Results.Text(outcome.Refusal, statusCode: StatusCodes.Status403Forbidden)
                : Results.Text(outcome.Refusal, statusCode: StatusCodes.Status400BadRequest);
        });
    }
}
