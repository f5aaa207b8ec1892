"""Training: the networks' data, stages and evaluation, on one shared trainer.

Packages: :mod:`training.data` (SGF corpora, feature shards, expert-game streams), :mod:`training.stages`
(the ``gogame-train`` stages that produce networks, the pipeline and campaigns), :mod:`training.eval`
(accuracy, value error, matches), :mod:`training.bench` (benchmarks of the engine and the stages,
``python -m training.bench.NAME``) and :mod:`training.demos` (the lecture demos). The modules at this level
serve them all: :mod:`training.trainer`, :mod:`training.options` (a stage's dataclass config as
command-line options), :mod:`training.stopping`, :mod:`training.metrics` and :mod:`training.cli`.
"""
