"""Consumer exports: each a pure function of the published catalog (dist/catalog.json).

Nothing here reads catalog.yaml, stacks or profiles: what a consumer gets is exactly what
was published, by digest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from imagekit.publish.catalog import PublishedCatalog


@dataclass(frozen=True)
class ExportFile:
    name: str  # file name under dist/exports/
    text: str


Exporter = Callable[[PublishedCatalog], list[ExportFile]]


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
