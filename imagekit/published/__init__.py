"""The published catalog (dist/catalog.json) as a typed model: what `imagekit publish` wrote,
read back and checked (`parse`, `read`). It owns the document's shape and nothing else, so
every step that reads a publication (publish/ composing the next one, exports/, site/) and
attest/ (whose package manifest is the catalog's `Packages`) depend on it, and it depends on
none of them: it may import only `imagekit.errors` and `imagekit.schema`.
"""
