"""The Kubeflow v1 jupyter web app's backend, run on imagekit's spawner UI config.

Its form-processing code (kubeflow/notebooks, branch notebooks-v1: apps/common/form.py,
utils.py, volumes.py, apps/default/routes/post.py and crud_backend/helpers.py, copied
unchanged into ../shared/consumers/kubeflow-v1-backend/) is laid out in a temporary folder as
the packages it imports itself from. What it imports from the rest of the crud_backend
package, which talks to the cluster, is stood in for here: `api` records the Notebook and
PVCs instead of creating them (its `deserialize` is the kubernetes client's own), `authn`
names a user, `decorators` pass the request through, `logging` is Python's. The POST route
runs in a real Flask app, on the request body the web app's form sends.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flask
import kubernetes.client

from tests import consumers

PACKAGE = "kfwa_apps"  # the app's `apps` package, under a name of its own here


@dataclass
class Cluster:
    """What the route would have created: Notebooks and PVCs (dry runs apart)."""
    notebooks: list[dict[str, Any]] = field(default_factory=list)
    pvcs: list[Any] = field(default_factory=list)


def _stand_ins(cluster: Cluster) -> dict[str, types.ModuleType]:
    api = types.ModuleType("kubeflow.kubeflow.crud_backend.api")

    def create_notebook(notebook: dict[str, Any], namespace: str,
                        dry_run: bool = False) -> dict[str, Any]:
        if not dry_run:
            cluster.notebooks.append(json.loads(json.dumps(notebook)))
        return notebook

    def create_pvc(pvc: Any, namespace: str, dry_run: bool = False) -> Any:
        if not dry_run:
            cluster.pvcs.append(pvc)
        return pvc

    def deserialize(data: Any, kind: str) -> Any:
        return kubernetes.client.ApiClient().deserialize(json.dumps(data), kind,
                                                         "application/json")

    def success_response(key: str, value: Any) -> Any:
        return flask.jsonify({"success": True, "status": 200, key: value})

    api.create_notebook = create_notebook  # type: ignore[attr-defined]
    api.create_pvc = create_pvc  # type: ignore[attr-defined]
    api.deserialize = deserialize  # type: ignore[attr-defined]
    api.success_response = success_response  # type: ignore[attr-defined]

    authn = types.ModuleType("kubeflow.kubeflow.crud_backend.authn")
    authn.get_username = lambda: "user@example.org"  # type: ignore[attr-defined]

    decorators = types.ModuleType("kubeflow.kubeflow.crud_backend.decorators")

    def passthrough(function: Callable[..., Any]) -> Callable[..., Any]:
        return function

    decorators.request_is_json_type = passthrough  # type: ignore[attr-defined]
    decorators.required_body_params = lambda *names: passthrough  # type: ignore[attr-defined]
    return {"api": api, "authn": authn, "decorators": decorators}


def _layout(root: Path) -> None:
    source = consumers.path("kubeflow-v1-backend")
    common = root / PACKAGE / "common"
    routes = root / PACKAGE / "default" / "routes"
    for folder in (root / PACKAGE, common, root / PACKAGE / "default", routes,
                   root / "kubeflow" / "kubeflow" / "crud_backend", common / "yaml"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").touch()
    for name in ("form.py", "utils.py", "volumes.py"):
        shutil.copy(source / name, common / name)
    shutil.copy(source / "notebook_template.yaml", common / "yaml" / "notebook_template.yaml")
    shutil.copy(source / "post.py", routes / "post.py")
    shutil.copy(source / "helpers.py", root / "kubeflow/kubeflow/crud_backend/helpers.py")
    # utils.py imports the app's status module for its listing route only.
    (common / "status.py").write_text("def process_status(notebook):\n    return {}\n")
    (routes / "__init__.py").write_text(
        "import flask\n\nbp = flask.Blueprint('default_routes', __name__)\n")


@dataclass
class Backend:
    app: flask.Flask
    cluster: Cluster
    utils: Any

    def create(self, namespace: str, body: dict[str, Any]) -> tuple[int, Any]:
        """POST the form's body as the web app's frontend does; (status, the JSON answer)."""
        response = self.app.test_client().post(f"/api/namespaces/{namespace}/notebooks",
                                               json=body)
        return response.status_code, response.get_json(silent=True) or response.text


def backend(root: Path, config: Path) -> Iterator[Backend]:
    """A fixture body: the app on the spawner UI config file `config`, its modules unloaded
    again afterwards."""
    _layout(root)
    cluster = Cluster()
    sys.path.insert(0, str(root))
    before = set(sys.modules)
    try:
        crud: Any = importlib.import_module("kubeflow.kubeflow.crud_backend")
        for name, stand_in in _stand_ins(cluster).items():
            sys.modules[stand_in.__name__] = stand_in
            setattr(crud, name, stand_in)
        crud.logging = logging
        crud.helpers = importlib.import_module("kubeflow.kubeflow.crud_backend.helpers")
        utils: Any = importlib.import_module(f"{PACKAGE}.common.utils")
        utils.CONFIGS = [str(config)]
        utils.load_spawner_ui_config.cache_clear()
        importlib.import_module(f"{PACKAGE}.default.routes.post")
        routes: Any = importlib.import_module(f"{PACKAGE}.default.routes")
        app = flask.Flask("jupyter-web-app")
        app.register_blueprint(routes.bp)
        yield Backend(app, cluster, utils)
    finally:
        sys.path.remove(str(root))
        for name in set(sys.modules) - before:
            del sys.modules[name]
