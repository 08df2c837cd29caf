"""From raw data to an MMRec-format dataset: ``mgnm prepare`` and ``mgnm features``.

- :mod:`~mgnm.prepare.log`: streaming readers (CSV, TSV, JSON lines, gzip) with hashes;
- :mod:`~mgnm.prepare.kcore`, :mod:`~mgnm.prepare.split`: deduplication, k-core, MMRec's split;
- :mod:`~mgnm.prepare.pipeline`: a log to a dataset directory, written atomically;
- :mod:`~mgnm.prepare.amazon`: the 2014/2018 Amazon review, metadata and image-feature files;
- :mod:`~mgnm.prepare.features`: text and image modalities for any dataset.
"""
