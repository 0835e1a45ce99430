"""``python -m colored_mnist ...``: the ``cmnist`` command on its own."""
import sys

from colored_mnist.cli import main

if __name__ == "__main__":
    sys.exit(main())
