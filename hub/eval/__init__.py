"""Evaluation: quality and speed figures per model version, recorded in the registry, and routing by budget.

- ``mixture``: modes covered / high-quality share on 2D Gaussian mixtures (VEEGAN / PacGAN definitions);
- ``metrics``: Fréchet distance, k-NN precision and recall, class agreement on feature vectors;
- ``classifier``: the shipped feature classifiers (``weights/``) image metrics are measured with;
- ``speed``: latency percentiles and images/s at batch 1 and the largest batch;
- ``evaluate``: ``genhub eval`` (what is measured, under which metric names);
- ``routing``: the best-quality version whose measured latency fits a budget (``Hub.route``);
- ``summary``, ``table``: reading figures back for cards and the README's models table.
"""
