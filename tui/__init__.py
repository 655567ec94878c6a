"""The Textual terminal UI, built only on the agent's public API and events."""
