namespace RenderFarm.Imaging;

/// <summary>Interleaved 8-bit pixels, rows top to bottom (RGB: 3 channels, grey: 1).</summary>
public sealed record DecodedImage(byte[] Pixels, int Width, int Height, int Channels);
