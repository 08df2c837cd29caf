"""Data layer: dataset loading and validation, graphs, sampling, model inputs."""

from mgnm.data.dataset import Dataset, Split, load_dataset
from mgnm.data.inputs import ModelInputs, build_inputs
from mgnm.data.sampler import BPRSampler

__all__ = ["BPRSampler", "Dataset", "ModelInputs", "Split", "build_inputs", "load_dataset"]
