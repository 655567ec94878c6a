"""DSML: the DeepSeek-V4 prompt format, its encoder and its (streaming) tool-call parser."""
