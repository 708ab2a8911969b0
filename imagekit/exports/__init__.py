"""Consumer exports: each a pure function of the published catalog (dist/catalog.json).

Nothing here reads catalog.yaml, stacks or profiles: what a consumer gets is exactly what
was published, by digest.

The package owns one module per consumer (kubespawner, dockerspawner, kubeflow,
workspacekind, setting, batchspawner, armada, kube) and their common helpers. It may import
the published-catalog model (`imagekit.published`), `imagekit.errors` and the HPC job
helpers (`imagekit.hpc`), never `imagekit.publish`: publishing calls the exports, not the
other way round.
"""

from __future__ import annotations

from imagekit.exports.common import Exporter, ExportFile
from imagekit.published.catalog import PublishedCatalog

__all__ = ["ExportFile", "Exporter", "export_all", "exporters"]


def exporters() -> dict[str, Exporter]:
    """Target name -> exporter; the first file each returns is its main one."""
    from imagekit.exports import (
        armada,
        batchspawner,
        dockerspawner,
        kube,
        kubeflow,
        kubespawner,
        setting,
        workspacekind,
    )

    return {
        "kubespawner": kubespawner.export,
        "dockerspawner": dockerspawner.export,
        "kubeflow": kubeflow.export,
        "workspacekind": workspacekind.export,
        "setting": setting.export,
        "batchspawner": batchspawner.export,
        "armada": armada.export,
        "kube": kube.export,
    }


def export_all(catalog: PublishedCatalog) -> list[ExportFile]:
    files: list[ExportFile] = []
    for export in exporters().values():
        files += export(catalog)
    return files
