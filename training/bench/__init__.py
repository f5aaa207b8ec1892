"""Benchmarks, each ``python -m training.bench.NAME`` (``--help``): speed and accuracy figures of the engine
(board, features, rollouts, search, inference, genmove time, rules against sgfmill) and of the training
stages (dual net, campaign state, the value data's floor). BENCHMARKS.md quotes them with their commands."""
