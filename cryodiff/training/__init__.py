"""Training: configuration and presets, data, checkpoints, the training loop."""
