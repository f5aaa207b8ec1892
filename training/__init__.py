"""Training: datasets, the trainer, pipelines, matches and demos."""
