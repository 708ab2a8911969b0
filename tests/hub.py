"""What the consumers' spawners need of JupyterHub when built outside a running hub."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SAMPLE = Path(__file__).resolve().parent / "data" / "published-catalog.json"


class User:
    """The part of jupyterhub.user.User a spawner reads while it is configured and rendered."""

    def __init__(self, name: str = "alice") -> None:
        # SlurmSpawner looks the user up in /etc/passwd: give it one that exists there.
        self.name = self.escaped_name = name
        self.id = 1
        self.orm_user = None
        self.url = f"/user/{name}/"
        self.server = None
        self.spawners: dict[str, Any] = {}
        self.settings: dict[str, Any] = {}
