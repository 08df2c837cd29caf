"""From raw data to an MMRec-format dataset: ``mgnm prepare`` and ``mgnm features``.

- :mod:`~mgnm.prepare.readers`: streaming readers (CSV, TSV, JSON lines, gzip) with hashes;
- :mod:`~mgnm.prepare.kcore`, :mod:`~mgnm.prepare.split`: deduplication, k-core, the splits
  (MMRec's random and time splits, leave-last-out, absolute timestamp cuts);
- :mod:`~mgnm.prepare.pipeline`: a log to a dataset directory, written atomically;
- :mod:`~mgnm.prepare.amazon`: the Amazon review and metadata files (2014, 2018, 2023) and the
  2014/2018 image-feature files;
- :mod:`~mgnm.prepare.features`: text and image modalities for any dataset.
"""
