"""Given tested images, when I publish, then a real registry holds exactly what the catalog
names, by digest, and the consumers' own packages accept the exports."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from imagekit.publish.common import IMMUTABLE
from imagekit.published.catalog import PublishedCatalog, read
from tests.integration import apptainer as ap
from tests.integration import suite
from tests.integration.conftest import ROOT, failed, imagekit
from tests.integration.registry import LocalRegistry, fresh_registry

pytestmark = pytest.mark.integration

DIST = suite.DIST
PUBLISHED = ["base", "scipy", "scipy-hpc"]
NS = suite.NAMESPACE
TEMPORARY = "io.imagekit.temporary"  # the label of what a CLI process made


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    yield from fresh_registry(tmp_path_factory.mktemp("registry"))


@pytest.fixture(scope="module")
def ready(base_image: str, smoke: Callable[[str], dict[str, Any]]) -> None:
    """base, scipy and scipy-hpc built, their SIFs made, and each tested."""
    imagekit("build", "scipy", "scipy-hpc", "--format", "docker", "--format", "sif",
             "--sif-method", "native", "--plain")
    for name in PUBLISHED:
        report = smoke(name)
        assert report["exit"] == 0, failed(report)


def snapshot() -> dict[str, bytes]:
    files = [DIST / "catalog.json", *sorted((DIST / "exports").glob("*"))]
    return {str(p.relative_to(DIST)): p.read_bytes() for p in files if p.is_file()}


def publish(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return imagekit("publish", *args, check=check)


def published() -> PublishedCatalog:
    return read(DIST / "catalog.json")


def test_an_untested_image_is_refused_and_nothing_is_pushed(registry: LocalRegistry,
                                                             ready: None) -> None:
    imagekit("build", "scipy-kubeflow", "--format", "docker", "--force", "--plain")
    before = snapshot()
    result = publish("scipy-kubeflow", check=False)
    assert result.returncode == 2
    assert "scipy-kubeflow" in result.stderr and "was not tested" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert registry.tags(f"{NS}/scipy-kubeflow") == []
    assert registry.tags(f"{NS}/catalog") == []
    assert snapshot() == before


def test_ctrl_c_while_an_image_and_its_sif_are_pushed_moves_no_tag_and_leaves_none(
        registry: LocalRegistry, ready: None, client: Any) -> None:
    """The engine pushes scipy's image in a thread of its own while its SIF is uploaded:
    Ctrl-C while both are under way stops both, and leaves neither a followed tag in the
    registry nor the engine's temporary tag nor a container."""
    before = snapshot()
    image_id = client.images.get(suite.ref("scipy")).id
    assert not registry.tags(f"{NS}/scipy") and not registry.tags(f"{NS}/sif/scipy")
    proc = subprocess.Popen([sys.executable, "-m", "imagekit", "publish", "scipy",
                             "--catalog", str(suite.CATALOG)], cwd=suite.PROJECT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True,  # Ctrl-C reaches the group, as a terminal's
                            env={**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"})
    # Strike once the registry holds an upload under way in both repositories: the image's
    # layers are hundreds of MB for the engine to compress, its SIF as many to send.
    deadline = time.monotonic() + 300
    while not all(_uploading(registry, r) for r in ("scipy", "sif/scipy")):
        assert proc.poll() is None and time.monotonic() < deadline, "no upload began"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-3000:]
    assert "interrupted" in out and "Traceback" not in out
    assert "[scipy] pushed " not in out
    assert "[scipy] stopped the engine's push" in out, out[-3000:]
    assert snapshot() == before
    for repository in (f"{NS}/scipy", f"{NS}/sif/scipy"):
        assert registry.tags(repository) == [], repository
    assert [t for t in client.images.get(image_id).tags if f":{IMMUTABLE}" in t] == []
    mine = f"{proc.pid}-"
    assert [c.name for c in client.containers.list(all=True, filters={"label": TEMPORARY})
            if c.labels.get(TEMPORARY, "").startswith(mine)] == []


def _uploading(registry: LocalRegistry, repository: str) -> bool:
    """Whether the registry's storage holds an upload under way to NS/repository."""
    uploads = registry.folder / f"data/docker/registry/v2/repositories/{NS}/{repository}/_uploads"
    return uploads.is_dir() and any(uploads.iterdir())


def test_a_registry_stopped_between_two_pushes_changes_nothing_and_a_rerun_converges(
        registry: LocalRegistry, ready: None) -> None:
    publish("base")
    before = snapshot()
    assert set(before) >= {"catalog.json", "exports/kubespawner.yaml"}
    proc = subprocess.Popen([sys.executable, "-m", "imagekit", "publish", *PUBLISHED,
                             "--catalog", str(suite.CATALOG)], cwd=suite.PROJECT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("[scipy] pushing "):
            # base is published; scipy's image and SIF pushes are starting, side by side,
            # and take seconds (hundreds of MB each): the registry goes away under both.
            registry.stop()
            break
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, "".join(lines) + out + err
    assert "did not answer" in err or "failed" in err, err
    assert "Traceback" not in err
    # Said in a person's words, not as the reprs the HTTP libraries nest.
    assert "Caused by" not in err and "Max retries" not in err and "'))" not in err, err
    assert snapshot() == before  # byte for byte
    assert not list(DIST.glob(".publish-*"))

    registry.start()
    after_fault = set(registry.tags(f"{NS}/scipy")) | set(registry.tags(f"{NS}/sif/scipy"))
    rerun = {i["image"]: i for i in json.loads(publish(*PUBLISHED, "--json").stdout)["images"]}
    assert rerun["base"]["sent"] == 0  # there: not sent again
    assert rerun["scipy-hpc"]["sent"] > 0
    assert snapshot() != before
    first = snapshot()
    # The tags people follow had not moved after the fault: none of the tags the rerun
    # published scipy under was in its repositories then.
    followed = {t for t in published().image("scipy").tags if not t.startswith(IMMUTABLE)}
    assert "latest" in followed and not followed & after_fault, after_fault

    again = json.loads(publish(*PUBLISHED, "--json").stdout)
    assert [(i["sent"], i["sif_sent"]) for i in again["images"]] == [(0, 0)] * 3
    assert again["changed"] is False
    assert snapshot() == first


def test_a_full_disk_while_writing_the_catalog_leaves_no_partial_file(
        registry: LocalRegistry, ready: None, tmp_path: Path) -> None:
    publish("base")
    project = tmp_path / "project"
    suite.copy_project(project)
    dist = project / "dist"
    dist.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(dist)], check=True)
    try:
        shutil.copytree(DIST / "tested", dist / "tested")
        with (dist / "filler").open("wb", buffering=0) as filler, \
                contextlib.suppress(OSError):
            while True:
                filler.write(b"\1" * 4096)
        os.truncate(dist / "filler", (dist / "filler").stat().st_size - 8192)
        before = sorted(p.name for p in dist.iterdir())
        result = imagekit("publish", "base", catalog=project / "catalog.yaml", check=False)
        output = result.stdout + result.stderr
        assert result.returncode == 1, output[-3000:]
        assert "cannot write the catalog" in result.stderr
        assert "no space left on device" in result.stderr.lower()
        assert "Traceback" not in output
        assert sorted(p.name for p in dist.iterdir()) == before  # no .publish-*, no part
        (dist / "filler").unlink()
        imagekit("publish", "base", catalog=project / "catalog.yaml")
        assert read(dist / "catalog.json").image("base").digest == \
            published().image("base").digest
    finally:
        subprocess.run(["umount", str(dist)], check=True)


def test_the_catalog_names_by_digest_what_the_registry_holds(registry: LocalRegistry,
                                                            client: Any) -> None:
    document = json.loads((DIST / "catalog.json").read_text())
    schema = json.loads((ROOT / "schemas" / "published-catalog.schema.json").read_text())
    jsonschema.validate(document, schema)
    catalog = published()
    assert [i.name for i in catalog.images] == PUBLISHED
    assert catalog.defaults == {"jupyter": "scipy"}
    assert {lo.name for lo in catalog.left_out} >= {"rstudio", "vscode"}
    for image in catalog.images:
        path = f"{NS}/{image.name}"
        assert image.reference == f"{suite.ADDRESS}/{path}@{image.digest}"
        assert "latest" in image.tags and image.tested.status == "passed"
        assert f"id-{image.image_id[7:19]}" in image.tags  # the immutable tag
        for tag in image.tags:
            digest, manifest = registry.manifest(path, tag)
            assert digest == image.digest, (image.name, tag)
        # The registry's config blob is the image the tests passed on...
        assert manifest["config"]["digest"] == image.image_id
        record = json.loads((DIST / "tested" / f"{image.image_id[7:]}.json").read_text())
        assert record["failed"] == 0 and record["passed"] == image.tested.passed
        # ...and pulling by digest gives that very image.
        pulled = client.images.pull(image.reference)
        assert pulled.id == image.image_id
        # Which engine built it, as the image's own label says (none on an image an older
        # imagekit built, which the engine's cache may still hold: test_build checks the
        # label is written).
        assert image.built_by == pulled.labels.get("io.imagekit.built-by")
    scipy = catalog.image("scipy")
    numpy_tag = next(t for t in scipy.tags if t.startswith("numpy-"))
    assert scipy.packages.pip["numpy"] == numpy_tag.removeprefix("numpy-")
    assert "python3" in scipy.packages.debian
    # The catalog itself is an artifact beside the images, byte for byte dist/catalog.json.
    assert registry.layer(f"{NS}/catalog", "latest") == (DIST / "catalog.json").read_bytes()


def test_sif_artifacts_are_what_apptainer_push_writes(registry: LocalRegistry) -> None:
    for image in published().images:
        if image.sif is None:
            continue
        path = f"{NS}/sif/{image.name}"
        digest, manifest = registry.manifest(path, "latest")
        assert digest == image.sif.digest
        assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert manifest["config"]["mediaType"] == "application/vnd.sylabs.sif.config.v1+json"
        config = registry.get(f"{path}/blobs/{manifest['config']['digest']}").content
        assert json.loads(config) == {}
        (layer,) = manifest["layers"]
        assert layer["mediaType"] == "application/vnd.sylabs.sif.layer.v1.sif"
        assert layer["annotations"]["org.opencontainers.image.title"] == image.sif.filename
        assert layer["digest"] == f"sha256:{image.sif.sha256}"
        assert "org.opencontainers.image.created" in manifest["annotations"]
    assert {i.name for i in published().images if i.sif} == {"scipy", "scipy-hpc"}


def test_real_apptainer_pulls_the_sif_byte_identical_and_runs_it(
        registry: LocalRegistry, sid_root: Path) -> None:
    image = published().image("scipy-hpc")
    assert image.sif is not None
    runner = ap.Apptainer(sid_root)
    target = runner.home / "pulled.sif"
    target.unlink(missing_ok=True)
    with ap.fuse_for_user():
        runner.run("apptainer", "pull", "--no-https", "pulled.sif", image.sif.reference,
                   timeout=600)
        assert hashlib.sha256(target.read_bytes()).hexdigest() == image.sif.sha256
        out = runner.run("apptainer", "exec", "pulled.sif", "python3", "-c",
                         "import numpy; print('numpy', numpy.__version__)").stdout
        assert f"numpy {image.packages.pip['numpy']}" in out
        # What the batchspawner export's job does: exec the digest reference directly.
        direct = runner.run("apptainer", "exec", "--no-https", image.sif.reference, "python3",
                            "-c", "print('served from', 'oras')", timeout=600).stdout
        assert "served from oras" in direct
        # `singularity` is the same program under its old name; a tag works as well.
        scipy = published().image("scipy")
        assert scipy.sif is not None
        tagged = f"oras://{scipy.sif.repository}:latest"
        runner.run("singularity", "pull", "--no-https", "--force", "tagged.sif", tagged,
                   timeout=600)
        assert (hashlib.sha256((runner.home / "tagged.sif").read_bytes()).hexdigest()
                == scipy.sif.sha256)
    target.unlink(missing_ok=True)
    (runner.home / "tagged.sif").unlink(missing_ok=True)


def test_skip_tests_publishes_loudly_without_moving_tags(registry: LocalRegistry) -> None:
    result = publish("scipy-kubeflow", "--skip-tests")
    assert "WARNING: --skip-tests" in result.stderr
    image = published().image("scipy-kubeflow")
    assert image.tested.status == "skipped"
    (tag,) = image.tags
    assert tag == f"untested-{image.image_id[7:19]}"
    # No latest, no date; the other tag lists what refers to the image (its SBOM).
    tags = registry.tags(f"{NS}/scipy-kubeflow")
    assert [t for t in tags if not t.startswith("sha256-")] == [tag]
    assert tags == sorted([tag, "sha256-" + image.digest.removeprefix("sha256:")])
    assert published().image("scipy").tested.status == "passed"  # the others are kept


def test_a_new_digest_retires_the_old_workspacekind_value(registry: LocalRegistry) -> None:
    old = published().image("scipy-kubeflow")
    imagekit("build", "scipy-kubeflow", "--format", "docker", "--force", "--plain")
    publish("scipy-kubeflow", "--skip-tests")
    new = published().image("scipy-kubeflow")
    assert new.digest != old.digest
    assert new.history[0].digest == old.digest
    kinds = list(yaml.safe_load_all((DIST / "exports" / "workspacekind.yaml").read_text()))
    (jupyter,) = [k for k in kinds if any(
        v["spec"]["image"] == new.reference
        for v in k["spec"]["podTemplate"]["options"]["imageConfig"]["values"])]
    values = {v["spec"]["image"]: v
              for v in jupyter["spec"]["podTemplate"]["options"]["imageConfig"]["values"]}
    retired, current = values[old.reference], values[new.reference]
    assert retired["spawner"]["hidden"] is True
    assert retired["redirect"]["to"] == current["id"]
    assert retired["id"] != current["id"]
    # The old image is still in the registry for the Workspaces that use it.
    assert registry.manifest(f"{NS}/scipy-kubeflow", old.digest)[0] == old.digest


def test_the_exports_of_this_publication_load_into_the_real_consumers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit import test_export_batchspawner as bs
    from tests.unit import test_export_dockerspawner as ds
    from tests.unit import test_export_kubespawner as ks

    catalog = published()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(ks.KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    profiles = yaml.safe_load((DIST / "exports" / "kubespawner.yaml").read_text())
    for image in catalog.for_consumer("kubespawner"):
        _, pod = ks.spawn(profiles["singleuser"]["profileList"], ks.form_for(catalog, image))
        assert pod.spec.containers[0].image == image.reference
    config = ds.load(catalog)
    for label, reference in config.DockerSpawner.allowed_images.items():
        assert ds.start(config, {"image": [label]}) == reference
    made = bs.children(catalog)
    assert set(made) == {"scipy", "scipy-hpc"}
    for name, (_, child) in made.items():
        image = catalog.image(name)
        assert image.sif is not None
        assert bs.exec_line(bs.render(child)) == bs.expected_exec(image, image.sif.reference,
                                                                  True)


def test_export_prints_a_consumer_file_from_the_published_catalog(tmp_path: Path) -> None:
    text = imagekit("export", "setting").stdout
    assert text == (DIST / "exports" / "setting.yaml").read_text()
    target = tmp_path / "profiles.py"
    imagekit("export", "kubespawner", "--file", "kubespawner.py", "-o", str(target))
    assert target.read_text() == (DIST / "exports" / "kubespawner.py").read_text()
    bad = imagekit("export", "kubespawnr", check=False)
    assert bad.returncode == 2 and "did you mean kubespawner?" in bad.stderr


def test_publish_time_and_bytes_are_reported(registry: LocalRegistry) -> None:
    started = time.monotonic()
    report = json.loads(publish(*PUBLISHED, "--json").stdout)
    assert report["sent"] < 100_000  # only the catalog's small manifest, if anything
    assert report["seconds"] <= time.monotonic() - started


CANARY = "canary-Pw-7f3q"


def test_credentials_come_from_the_environment_or_docker_config_and_are_never_shown(
        registry: LocalRegistry, tmp_path: Path) -> None:
    import base64

    import bcrypt

    htpasswd = tmp_path / "htpasswd"
    hashed = bcrypt.hashpw(CANARY.encode(), bcrypt.gensalt()).decode()
    htpasswd.write_text(f"publisher:{hashed}\n")
    empty = tmp_path / "no-docker-config"
    empty.mkdir()
    registry.stop()
    registry.htpasswd, registry.auth = htpasswd, ("publisher", CANARY)
    registry.start()
    try:
        bare = {**os.environ, "DOCKER_CONFIG": str(empty)}
        for key in ("IMAGEKIT_REGISTRY_USERNAME", "IMAGEKIT_REGISTRY_PASSWORD"):
            bare.pop(key, None)
        refused = _publish_with(bare, "scipy")
        assert refused.returncode == 1
        assert "asks for credentials and none were found" in refused.stderr
        wrong = _publish_with({**bare, "IMAGEKIT_REGISTRY_USERNAME": "publisher",
                               "IMAGEKIT_REGISTRY_PASSWORD": "not-it"}, "scipy")
        assert wrong.returncode == 1 and "refused the credentials" in wrong.stderr

        by_env = _publish_with({**bare, "IMAGEKIT_REGISTRY_USERNAME": "publisher",
                                "IMAGEKIT_REGISTRY_PASSWORD": CANARY}, "scipy")
        assert by_env.returncode == 0, by_env.stderr

        config_dir = tmp_path / "docker-config"
        config_dir.mkdir()
        token = base64.b64encode(f"publisher:{CANARY}".encode()).decode()
        (config_dir / "config.json").write_text(
            json.dumps({"auths": {suite.ADDRESS: {"auth": token}}}))
        by_config = _publish_with({**bare, "DOCKER_CONFIG": str(config_dir)}, "scipy")
        assert by_config.returncode == 0, by_config.stderr

        for result in (refused, wrong, by_env, by_config):
            assert "Traceback" not in result.stderr
            assert CANARY not in result.stdout + result.stderr
            assert token not in result.stdout + result.stderr
        for path in DIST.rglob("*"):
            if path.is_file() and path.suffix != ".sif":
                assert CANARY.encode() not in path.read_bytes(), path
    finally:
        registry.stop()
        registry.htpasswd, registry.auth = None, None
        registry.start()


def _publish_with(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imagekit", "publish", *args, "--catalog",
                           str(suite.CATALOG)], cwd=suite.PROJECT,
                          env={**env, "COLUMNS": "200"}, capture_output=True, text=True,
                          timeout=900)


def test_a_tls_registry_is_verified_with_the_site_ca(registry: LocalRegistry, project: Path,
                                                     tmp_path: Path) -> None:
    import shutil

    from tests.integration.registry import make_ca
    from tests.unit.test_validation import edit

    ca, cert, key = make_ca(tmp_path)
    host_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    site_bundle = tmp_path / "site-bundle.crt"
    site_bundle.write_bytes(host_bundle.read_bytes() + ca.read_bytes())
    edit(project / "catalog.yaml", "insecure_registry: true", "insecure_registry: false")
    edit(project / "profiles/site-ca.yaml", str(host_bundle), str(site_bundle))
    shutil.copytree(DIST / "tested", project / "dist" / "tested")
    engine_trust = Path("/etc/docker/certs.d") / suite.ADDRESS
    engine_trust.mkdir(parents=True, exist_ok=True)
    shutil.copy(ca, engine_trust / "ca.crt")
    registry.stop()
    registry.tls = (ca, cert, key)
    registry.start()
    try:
        imagekit("publish", "base", catalog=project / "catalog.yaml")
        base = read(project / "dist" / "catalog.json").image("base")
        assert not read(project / "dist" / "catalog.json").registry_insecure
        assert registry.manifest(f"{NS}/base", "latest")[0] == base.digest

        # The same registry with a site bundle that lacks its CA: refused, nothing changes.
        edit(project / "profiles/site-ca.yaml", str(site_bundle), str(host_bundle))
        before = (project / "dist" / "catalog.json").read_bytes()
        refused = imagekit("publish", "base", catalog=project / "catalog.yaml", check=False)
        assert refused.returncode == 1
        assert f"TLS to {suite.ADDRESS} failed" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert (project / "dist" / "catalog.json").read_bytes() == before
    finally:
        shutil.rmtree(engine_trust, ignore_errors=True)
        registry.stop()
        registry.tls = None
        registry.start()
