"""The function programming model: handler kinds, func.yaml, build, run and invoke."""
