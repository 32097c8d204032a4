using System.Globalization;
using RenderFarm.Protocol;
using RenderFarm.Shared;
using StackExchange.Redis;
using RenderFarm.FarmState;
using RenderFarm.FarmState.Jobs;

namespace RenderFarm.Coordinator.Jobs;

public enum ResultAdmission { Accepted, UnknownImage, Cancelled }
