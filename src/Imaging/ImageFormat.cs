namespace RenderFarm.Imaging;

/// <summary>The image formats the farm accepts: init images and masks are PNG or JPEG, results are PNG.</summary>
public enum ImageFormat
{
    Png,
    Jpeg,
}
