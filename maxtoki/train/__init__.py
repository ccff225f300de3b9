"""Training: temporal prompts → a trained MaxToki model (one process or torchrun)."""
