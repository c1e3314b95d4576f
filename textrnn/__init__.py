"""textrnn: recurrent-network text generation and NLP from the command line."""

__version__ = "0.1.0"
