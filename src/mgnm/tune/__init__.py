"""Hyper-parameter search with Optuna (``mgnm tune``): a space file, pruning on the validation
curve, a resumable study stored beside the trials' run directories, trials local or on Ray."""
