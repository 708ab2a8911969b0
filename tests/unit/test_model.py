"""Given the shipped catalog, the resolved model has the inheritance and order users expect."""

from __future__ import annotations

from pathlib import Path

from imagekit.model import Catalog
from imagekit.resolve import load_catalog


def test_every_stack_and_listed_image_resolves(catalog: Catalog) -> None:
    assert set(catalog.stacks) == {
        "base", "scipy", "pytorch", "pytorch-cuda", "r", "vscode", "rstudio", "pyspark"
    }
    listed = {name for name, img in catalog.images.items() if img.listed}
    assert {"base", "scipy", "scipy-hpc", "pytorch", "pytorch-cuda", "r", "vscode",
            "rstudio", "pyspark"} <= listed


def test_parents_come_before_children(catalog: Catalog) -> None:
    order = list(catalog.images)
    for img in catalog.images.values():
        if img.parent is not None:
            assert order.index(img.parent) < order.index(img.name)


def test_closure_builds_each_ancestor_once_parents_first(catalog: Catalog) -> None:
    names = [i.name for i in catalog.closure(["pytorch", "scipy-hpc", "scipy"])]
    assert names == ["base", "scipy", "scipy-hpc", "pytorch"]


def test_runtime_is_inherited_and_overridable(catalog: Catalog) -> None:
    base, scipy, vscode = (catalog.stacks[n] for n in ("base", "scipy", "vscode"))
    assert scipy.runtime == base.runtime
    assert vscode.runtime.type == "code-server"
    assert vscode.runtime.command == ("start-code-server.sh",)
    assert vscode.runtime.entrypoint == base.runtime.entrypoint
    assert vscode.runtime.healthcheck.path == "/healthz"
    assert catalog.stacks["pytorch-cuda"].runtime.gpu is True
    assert catalog.stacks["pytorch"].runtime.gpu is False


def test_env_merges_with_the_child_winning(catalog: Catalog) -> None:
    env = dict(catalog.stacks["pyspark"].env)
    assert env["NB_USER"] == "jovyan"  # from base
    assert env["JAVA_HOME"].startswith("/usr/lib/jvm/")  # its own


def test_checks_are_inherited_down_the_tree(catalog: Catalog) -> None:
    base, scipy, pytorch = (catalog.stacks[n].checks for n in ("base", "scipy", "pytorch"))
    assert set(base.imports) < set(scipy.imports) < set(pytorch.imports)
    assert "torch" in pytorch.imports and "jupyterlab" in pytorch.imports
    assert base.execute[0] in pytorch.execute


def test_a_stack_layer_holds_only_what_it_adds(catalog: Catalog) -> None:
    scipy = catalog.stacks["scipy"]
    assert "numpy" in scipy.layer.pip
    assert not any(p.startswith("jupyterlab") for p in scipy.layer.pip)
    assert any(p.startswith("jupyterlab") for p in scipy.pip_all)


def test_profiled_image_is_from_its_stack_image(catalog: Catalog) -> None:
    hpc = catalog.images["scipy-hpc"]
    assert hpc.parent == "scipy"
    assert [layer.origin for layer in hpc.layers] == ["profile slurm-host"]
    assert "/etc/slurm" in hpc.binds and "/var/run/munge" in hpc.binds
    assert any(c.run.endswith("sbatch --version") for c in hpc.checks.commands)


def test_site_profiles_are_layered_into_the_root_only(catalog: Catalog) -> None:
    assert [layer.origin for layer in catalog.images["base"].layers] == [
        "profile site-ca", "profile mirrors", "stack base"
    ]
    assert [layer.origin for layer in catalog.images["scipy"].layers] == ["stack scipy"]
    assert catalog.site.find_links == "/opt/wheels"
    assert catalog.site.ca_bundle


def test_defaults_by_notebook_type(catalog: Catalog) -> None:
    assert catalog.defaults == {"jupyter": "scipy", "code-server": "vscode",
                                "rstudio": "rstudio"}


def test_image_refs(catalog: Catalog) -> None:
    assert catalog.ref("scipy") == "127.0.0.1:5055/imagekit/scipy:latest"
    assert catalog.parent_ref(catalog.images["base"]) == "imagekit/debian:bookworm"
    assert catalog.parent_ref(catalog.images["r"]) == "127.0.0.1:5055/imagekit/base:latest"


def test_parents_not_listed_are_built_but_not_published(project: Path) -> None:
    text = (project / "catalog.yaml").read_text()
    text = text.replace("  - stack: base\n    description: Minimal JupyterLab; the parent of "
                        "every other image.\n", "")
    (project / "catalog.yaml").write_text(text)
    cat = load_catalog(project / "catalog.yaml")
    assert cat.images["base"].listed is False
    assert cat.images["base"].publish is False
    assert cat.images["scipy"].parent == "base"
