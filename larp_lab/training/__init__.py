"""Training: tokenizer (with prior) and generator loops, checkpoints, logging, DDP."""
