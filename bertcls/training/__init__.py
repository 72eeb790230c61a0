"""Training: the Trainer and what runs inside it (optimizer groups, adversarial steps, k-fold, search, interrupts)."""
