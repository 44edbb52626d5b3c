"""Argument types shared by the demos' command lines (argparse exits 2 on a bad value)."""

import argparse


def bounded_int(low, high):
    """An argparse type: an integer from low to high, inclusive."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not in {low}..={high}")
        return value

    return parse
