"""Measuring the networks and the engine: policy accuracy (:mod:`~training.eval.policy`), value error
(:mod:`~training.eval.value`), matches between GTP engines (:mod:`~training.eval.match`) and between raw
policies (:mod:`~training.eval.policy_match`), and a match's resignations checked (:mod:`~training.eval.resignations`)."""
