"""Training: the one loop (optimizer, checkpoints, resuming), supernet training, and the frozen-encoder
regime with its one cache of encoder outputs."""
