"""The workload shared by the demos: append `count` random floats to a list."""

import random


def do_something(count, out_list=None):
    """Append `count` values of random.random() to out_list and return it."""
    if out_list is None:
        out_list = []
    for _ in range(count):
        out_list.append(random.random())
    return out_list


def square(x):
    """The function the Pool demo maps over its inputs."""
    return x * x
