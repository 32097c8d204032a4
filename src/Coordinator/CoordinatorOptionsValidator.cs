using Microsoft.Extensions.Options;
using RenderFarm.Coordinator.Storage;

namespace RenderFarm.Coordinator;

/// <summary>
/// Checks settings of <see cref="CoordinatorOptions"/> that only make sense together, at start, each error naming its
/// configuration keys, so that a farm does not run in a configuration that loses results. (Plain ranges are data
/// annotations on the options.)
/// </summary>
public sealed class CoordinatorOptionsValidator : IValidateOptions<CoordinatorOptions>
{
    private const string Key = CoordinatorOptions.Section;

    public ValidateOptionsResult Validate(string? name, CoordinatorOptions options)
    {
        var errors = new List<string>();
        // Data annotations of the options do not reach into the nested S3 settings.
        var s3 = new List<System.ComponentModel.DataAnnotations.ValidationResult>();
        System.ComponentModel.DataAnnotations.Validator.TryValidateObject(options.S3, new(options.S3), s3, validateAllProperties: true);
        errors.AddRange(s3.Select(r => $"{Key}:S3:{string.Join(",", r.MemberNames)}: {r.ErrorMessage}"));
        // A presigned PUT without If-None-Match writes whatever is there over: a worker whose delivery was lost still
        // holds its URLs (they live UploadTtl), and would replace the result another delivery stored and the job
        // recorded, so that what users download no longer has the sha256 on record. A directory store takes no uploads
        // (ResultStores warns that the setting does nothing there).
        if (S3Location.IsS3Url(options.Storage) && options.S3.DirectUploads && !options.S3.ConditionalWrites)
        {
            errors.Add($"{Key}:S3:DirectUploads needs {Key}:S3:ConditionalWrites: without If-None-Match a worker's upload URL, valid for " +
                       $"{Jobs.WorkerReportHandler.UploadTtl.TotalMinutes:0} minutes, can write over a result another delivery stored and the job " +
                       $"recorded. Set {Key}:S3:DirectUploads=false for a server that ignores If-None-Match (results then go through the coordinator), " +
                       $"or {Key}:S3:ConditionalWrites=true for one that honours it (AWS S3, MinIO, R2)");
        }
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
