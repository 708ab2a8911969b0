"""What CI systems are handed: the build plan (plan.py: images, waves, tree keys, what each
file rebuilds) and the GitHub workflow derived from it (github.py). It sits at the top of the
house beside the CLI's other outputs: it may import the build step's tree keys, publishing's
one-platform rule and everything below them."""
