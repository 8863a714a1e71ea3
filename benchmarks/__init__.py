"""Performance runners: each prints numbers and ratios against peers measured in the same run.

    python -m benchmarks runtime [--quick]

Never timed assertions: a runner reports, a person judges.
"""
