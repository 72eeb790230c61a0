"""Models: pretrained checkpoints as people have them, heads, losses, and a fine-tuned folder as one object."""
