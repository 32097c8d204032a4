using RenderFarm.Diffusion.Upscaling;
using RenderFarm.ModelBuilder.Upscalers;

namespace RenderFarm.Diffusion.Tests;

public class UpscalerModelTests(UpscalerFixture upscalers) : IClassFixture<UpscalerFixture>
{
    [Fact]
    public void TheScaleIsReadFromTheModel()
    {
        Assert.Equal(["x2", "x4"], upscalers.Library.Names);
        Assert.Equal(4, upscalers.Library.ScaleOf("x4"));
        Assert.Equal(2, upscalers.Library.ScaleOf("x2"));
    }

    [Fact]
    public void AnUnknownUpscalerIsNamedWithWhatIsOffered()
    {
        var ex = Assert.Throws<ArgumentException>(() => upscalers.Library.ScaleOf("x8"));
        Assert.Contains("x2, x4", ex.Message);
    }

    [Fact]
    public void AFolderWithoutModelIsNotOffered()
    {
        var root = Directory.CreateTempSubdirectory("renderfarm-upscalers-empty").FullName;
        try
        {
            Directory.CreateDirectory(Path.Combine(root, "empty"));
            UpscalerPresets.Write("rrdb-tiny-x2", Path.Combine(root, "latent")); // a keyword is never a folder's name
            using var library = new UpscalerLibrary(root);
            Assert.Empty(library.Names);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void AModelThatIsNotAnUpscalerIsRefusedAtLoad()
    {
        var root = Directory.CreateTempSubdirectory("renderfarm-upscalers-bad").FullName;
        try
        {
            // A VAE decoder takes 4 latent channels, not an RGB image.
            RenderFarm.ModelBuilder.ModelPresets.Write("tiny", Path.Combine(root, "model"));
            Directory.Move(Path.Combine(root, "model", "vae_decoder"), Path.Combine(root, "vae"));
            using var library = new UpscalerLibrary(root);
            var ex = Assert.Throws<ModelLoadException>(() => library.ScaleOf("vae"));
            Assert.Contains("channels", ex.Message);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
