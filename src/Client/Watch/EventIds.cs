namespace RenderFarm.Client.Watch;

/// <summary>Ordering of Redis stream ids ("&lt;ms&gt;-&lt;seq&gt;"), the event ids of a job.</summary>
public static class EventIds
{
    /// <summary>
    /// Compares two stream ids numerically. Ids that are not Redis stream ids compare by ordinal text, which keeps
    /// the comparison total (a coordinator with another id scheme still gets equal ids de-duplicated).
    /// </summary>
    public static int Compare(string a, string b)
    {
        if (TryParse(a, out var ams, out var aseq) && TryParse(b, out var bms, out var bseq))
        {
            var byMs = ams.CompareTo(bms);
            return byMs != 0 ? byMs : aseq.CompareTo(bseq);
        }

        return string.CompareOrdinal(a, b);
    }

    private static bool TryParse(string id, out ulong ms, out ulong seq)
    {
        seq = 0;
        var dash = id.IndexOf('-');
        if (dash < 0)
        {
            return ulong.TryParse(id, out ms);
        }

        return ulong.TryParse(id.AsSpan(0, dash), out ms) && ulong.TryParse(id.AsSpan(dash + 1), out seq);
    }
}
