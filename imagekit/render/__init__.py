"""Recipes from the model: one renderer per format (docker.py: a Dockerfile, singularity.py:
a Singularity definition) over one plan of what an image's recipe holds (plan.py), and the
Jinja templates they fill. It owns recipe text and nothing else: it may import the model,
the lock's pins and the schema below it, never the engine, a build or anything later."""
