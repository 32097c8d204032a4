namespace RenderFarm.Client.Pull;

/// <summary>What <see cref="ContactSheet.Write"/> drew.</summary>
public sealed record ContactSheetResult(string Path, ContactSheetLayout Layout, int Unreadable);
