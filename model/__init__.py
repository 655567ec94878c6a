"""DeepSeek-V4 in PyTorch: config, network, checkpoints, tokenizer, engine and sessions."""
