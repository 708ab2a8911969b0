"""Provenance and attestation of a built image: its package manifest read out of the image
(packages), the SBOM made from it (sbom), and signatures with the tools their verifiers use
(signing: cosign for images, Apptainer for SIFs). Both the SIF step and publishing use them,
so they live below both: this package may import the engine, `imagekit.run`, the credentials
and the published-catalog model (`imagekit.published`), never `imagekit.sif` or `publish/`.
"""
