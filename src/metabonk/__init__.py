"""MetaBonk: agents that learn from gameplay video, dream in a world model, and act with two speeds of thought."""

__version__ = "0.1.0"
