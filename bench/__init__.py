"""imagekit's benchmarks: imagekit side by side with what a site would use instead.

`make bench` (or `python3 -m bench`) builds, rebuilds, starts and converts real images on the
engine and writes one result set as JSON, then `BENCHMARKS.md` and a chart from it. Every
comparison is a ratio of medians taken in the same run, since the machine is shared and noisy.
"""
