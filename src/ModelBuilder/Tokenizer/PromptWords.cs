namespace RenderFarm.ModelBuilder.Tokenizer;

/// <summary>A fixed list of common English words typical of Stable Diffusion prompts; the tiny vocabulary is learned from it.</summary>
internal static class PromptWords
{
    public static readonly string[] All = """
        a an the of in on at with and or by for from to under over above near inside outside behind
        photo photograph picture image portrait landscape painting drawing sketch illustration render rendering
        oil watercolor acrylic pencil charcoal ink digital art artwork concept poster cover wallpaper
        cat dog horse bird fox wolf lion tiger bear rabbit owl eagle fish dragon unicorn butterfly deer
        man woman girl boy child person people king queen knight warrior wizard witch robot astronaut soldier
        face eyes hair smile hands dress armor hat crown cloak helmet mask
        red blue green yellow orange purple pink black white gray grey brown golden silver
        dark light bright colorful vibrant pastel muted neon glowing shiny
        city town village street house castle tower temple church bridge road building skyscraper ruins
        forest tree trees flower flowers garden field meadow grass mountain mountains hill valley river lake
        sea ocean beach island desert snow ice rain fog cloud clouds sky sun moon star stars night day
        sunset sunrise morning evening winter summer autumn spring storm lightning fire water
        beautiful detailed highly intricate realistic photorealistic hyperrealistic cinematic dramatic epic
        lighting light shadow shadows soft sharp focus bokeh depth blur lens camera wide angle closeup close up
        high quality best masterpiece resolution hd uhd sharp professional studio award winning trending
        style styled fantasy science fiction scifi cyberpunk steampunk medieval futuristic ancient modern
        vintage retro minimalist abstract surreal impressionist baroque gothic anime cartoon comic pixel
        painted by artist greg rutkowski alphonse mucha van gogh monet rembrandt da vinci
        unreal engine octane blender volumetric global illumination ray tracing 4k 8k
        small large big tiny huge giant old young happy sad cute scary peaceful quiet calm
        sitting standing running flying walking looking holding wearing floating
        table chair window door room interior kitchen library cafe shop market
        car train ship boat plane bicycle space planet galaxy nebula universe
        wood stone metal glass gold crystal marble paper fabric leather
        blurry ugly deformed distorted disfigured bad anatomy extra limbs low worst cropped watermark text signature
        jpeg artifacts duplicate mutated poorly drawn out of frame lowres noise grain
        """.Split((char[])[' ', '\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries)
        .Distinct(StringComparer.Ordinal).ToArray();
}
