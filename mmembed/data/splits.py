"""The split names every data set and corpus in mmembed uses."""

SPLITS = ("train", "validation", "test")
