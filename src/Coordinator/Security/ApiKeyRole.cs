namespace RenderFarm.Coordinator.Security;

/// <summary>Client: its tenant's jobs. Worker: WorkerService only. Admin: a client of its tenant that may also manage the fleet.</summary>
public enum ApiKeyRole { Client, Worker, Admin }
