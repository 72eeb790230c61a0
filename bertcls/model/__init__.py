"""Models: pretrained checkpoints as people have them, heads, losses, a fine-tuned folder as one object, and
the preview of rows as a model sees them."""
