"""The training stages, one ``gogame-train`` command each: supervised policy and value nets
(:mod:`~training.stages.sl`), the rollout and tree policies (:mod:`~training.stages.rollout`), self-play
(:mod:`~training.stages.selfplay`), the RL policy (:mod:`~training.stages.rl`), the value stage
(:mod:`~training.stages.value`), the dual net (:mod:`~training.stages.dual`); stages in order from a TOML
config (:mod:`~training.stages.pipeline`) and runs over many machines' turns (:mod:`~training.stages.campaign`)."""
