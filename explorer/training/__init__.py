"""The trainers of the explorer (dense fine-tune, classifier fine-tune, NASH gate training) on the one training path of ``pruning.training``."""
