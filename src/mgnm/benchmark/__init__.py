"""``mgnm benchmark``: every model tuned with the same budget, then seeds and significance.

- :mod:`mgnm.benchmark.run`: the budget, the per-model search (:func:`mgnm.tune.search.tune`
  over each model's shipped space) and the seed runs of each chosen configuration
  (:func:`mgnm.experiments.runners.run_all`), all resumable.
- :mod:`mgnm.benchmark.table`: the table (Markdown, CSV, LaTeX, JSON) with the best mean of
  each column in bold and the cells that differ significantly from it marked.
"""
