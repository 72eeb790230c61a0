"""Settings: the argument dataclasses (every flag) and recipe files that fill them."""
