"""Simulate an LLM serving cluster: `python main.py --help`."""

import sys

from inference_serving.cli import main

if __name__ == "__main__":
    sys.exit(main())
