"""Assets the built-in demo ships with: a small BPE tokenizer and a customer-support dataset."""
