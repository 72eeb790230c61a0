"""Knowledge distillation: a fine-tuned teacher folder into a small student folder."""
