"""Publishing: tested images and their SIFs to the registry by digest, then the published
catalog, its exports and site. It owns the registry (registry.py), the checks before the
first push (preflight.py), pushing (pipeline.py, whose door is `publish`), the release of
the catalog and dist/ (release.py), CI runners' shared images (shared.py), rollback and
retention (retention.py) and `imagekit verify` (verify.py); what they share is in common.py.
It is the last step but one: it may import everything upstream (model, build, checks, sif,
engine), the provenance helpers (`imagekit.attest`), the published-catalog model
(`imagekit.published`) and the readers of it it writes for (`imagekit.exports`,
`imagekit.site`); nothing but the CLI imports it.
"""
