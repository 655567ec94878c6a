"""Subcommands of `dsv4`: every module here defines `register(subparsers)`.

Modules import their heavy dependencies (torch, docker, vllm, textual) inside their handlers so
that `dsv4 --help` and the light commands start fast.
"""
