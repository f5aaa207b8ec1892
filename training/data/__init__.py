"""The networks' training data: SGF records read from folders and archives (:mod:`~training.data.corpus`),
bit-packed feature shards and the batch sources over them (:mod:`~training.data.shards`), and expert games
streamed straight from their archives (:mod:`~training.data.stream`)."""
