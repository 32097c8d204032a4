// Pull/ContactSheet.cs is being rewritten on the imaging branch and is left byte for byte as it was here, still in
// namespace RenderFarm.Client without usings for the folders its helpers moved to. These make them visible to it until
// that rewrite is merged; then it moves into RenderFarm.Client.Pull with usings of its own, and this file goes.
global using RenderFarm.Client.Cli;
global using RenderFarm.Client.Pull;
