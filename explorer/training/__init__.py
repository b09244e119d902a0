"""The trainers of the explorer (dense fine-tune, classifier fine-tune, NASH gate training), all on the
one training path of ``pruning.training``."""
