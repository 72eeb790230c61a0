"""Data: reading files into a DatasetDict, labels, tokenization."""
