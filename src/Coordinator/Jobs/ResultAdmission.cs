namespace RenderFarm.Coordinator.Jobs;

public enum ResultAdmission { Accepted, UnknownImage, Cancelled }
