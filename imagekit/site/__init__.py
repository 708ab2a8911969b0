"""`imagekit site`: a static HTML catalog people read, derived from dist/catalog.json.

An index of the published images and one page per image (its package manifest, its test
results, the commands to run it with Docker, Apptainer/Singularity, the SSH-tunnel job
and in a hub). Plain HTML and one stylesheet, no JavaScript: it reads on a phone and on a
wide screen, from a web server or straight from the file system.

The package owns the pages' templates and their rendering (build.py). Like the exports it
reads only the published catalog: it may import the published-catalog model
(`imagekit.published`), `imagekit.errors` and the small helpers it formats with
(`imagekit.hpc`, `imagekit.units`), never `imagekit.publish`, which calls it.
"""
