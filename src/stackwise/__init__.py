"""stackwise: pretrain decoder-only language models while growing them in depth."""

__version__ = "0.1.0"
