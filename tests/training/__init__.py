"""The training and CLI wing: the training loop, its files, reports and the command line."""
