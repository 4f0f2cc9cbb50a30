"""mlp: train, evaluate and inspect NumPy multilayer perceptrons on handwritten digits.

The package is a library first (``mlp_cli.config``, ``mlp_cli.data``, ``mlp_cli.model``,
``mlp_cli.train`` ...) with a thin Typer command line on top (``mlp_cli.cli``).
Importing the package itself is cheap: it pulls in no NumPy.
"""

__version__ = "0.1.0"
