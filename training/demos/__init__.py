"""The lecture demos: small models trained by the project's one :class:`~training.trainer.Trainer`.

``gogame-train demo NAME [--quick] [--out DIR]`` runs one demo; ``--list``
lists them. Each demo is a module of this package named in :data:`DEMOS`
that provides ``run(demo: DemoRun) -> dict`` (see :mod:`training.demos.common`):
it trains through the Trainer, evaluates on held-out data, writes its
pictures into ``demo.out`` and returns its figures, which the runner writes
to ``DIR/metrics.json`` next to a plot of every training run's metrics.csv.
"""
