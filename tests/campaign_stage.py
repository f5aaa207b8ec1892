"""A campaign stage for the tests: the tiny regression run of tests/test_trainer.py behind a typed config."""

from __future__ import annotations

from dataclasses import dataclass

from tests.test_trainer import mlp, mse_loss, regression_data
from training.trainer import TrainConfig, TrainingJob


@dataclass
class Config:
    samples: int = 200  # training samples (the held-out set is 40)
    hidden_seed: int = 0  # the model's initial weights
    steps: int = 100
    seed: int = 0  # the data order and the dropout masks


def build_job(config: Config) -> TrainingJob:
    train_config = TrainConfig(steps=config.steps, batch_size=16, lr=1e-2, val_every=10, log_every=5, ckpt_every=10,
                               ckpt_every_minutes=0, device="cpu", seed=config.seed)
    return TrainingJob(mlp(config.hidden_seed), mse_loss, regression_data(config.samples, 1),
                       regression_data(40, 2), train_config, {"kind": "regression"})
