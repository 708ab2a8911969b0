"""A release as a site runs it: images signed with the site's cosign key and SIFs with its
PGP key, an SBOM and a test record next to each image in the registry, the SBOM inside the
SIF, the catalog site, `imagekit verify`, a rollback with `publish --pin`, and retention
with `prune --keep`. Checked with the verifiers' own tools: cosign, Apptainer 1.4.5 (sid),
headless Chromium."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement

from imagekit.publish.common import CATALOG_REPOSITORY, base_of, history_tags
from imagekit.publish.registry import Registry
from imagekit.published.catalog import PublishedCatalog, read
from imagekit.resolve import load_catalog
from tests.browser import check_site
from tests.integration import apptainer as ap
from tests.integration import background, suite
from tests.integration.conftest import ROOT, imagekit, main_base
from tests.integration.paging import paging
from tests.integration.registry import LocalRegistry, fresh_registry

pytestmark = pytest.mark.integration

NS = "release"
ARTIFACTS = ROOT / "artifacts" / "site"


@dataclass
class Release:
    registry: LocalRegistry
    catalog: Path
    env: dict[str, str]
    cosign_pub: Path
    pgp_pub: Path
    first: PublishedCatalog
    stop: Callable[[], None]  # the registry

    @property
    def address(self) -> str:
        return self.registry.address

    @property
    def dist(self) -> Path:
        return self.catalog.parent / "dist"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return imagekit(*args, catalog=self.catalog, env=self.env, check=check)

    def published(self) -> PublishedCatalog:
        return read(self.dist / "catalog.json")


def prepare(root: Path) -> Release:
    """The first release, made in place (tests/integration/background.py; its builds are
    the suite engine's): the site's keys, base and scipy built under the module's namespace
    (scipy's SIF too), tested and published, signed, to a registry of the module's own."""
    address = suite.free_address()
    registries = fresh_registry(root / "registry", address)
    registry = next(registries)

    def stop() -> None:
        next(registries, None)

    try:
        main_base()
        tools = ap.host_tools(ap.ensure_root(), root / "bin")
        env, cosign_pub, pgp_pub = ap.site_keys(root, tools)
        env["PATH"] = f"{tools}:{os.environ['PATH']}"
        project = root / "project"
        catalog = suite.copy_project(project, NS, registry=address, quick_sifs=True)
        imagekit("build", "scipy", "--format", "docker", "--format", "sif", "--sif-method",
                 "native", "--plain", catalog=catalog, env=env)
        imagekit("test", "base", "scipy", catalog=catalog, env=env)
        imagekit("publish", "base", "scipy", catalog=catalog, env=env)
        return Release(registry, catalog, env, cosign_pub, pgp_pub,
                       read(project / "dist" / "catalog.json"), stop)
    except BaseException:
        stop()
        raise


@pytest.fixture(scope="module")
def release() -> Iterator[Release]:
    with background.taken(__name__) as found:
        yield found


def _referrers(release: Release, repository: str, digest: str) -> dict[str, str]:
    """artifactType -> digest of what refers to a manifest (the referrers tag's index)."""
    index = release.registry.get(
        f"{repository}/manifests/sha256-{digest.removeprefix('sha256:')}",
        Accept="application/vnd.oci.image.index.v1+json").json()
    return {m.get("artifactType", ""): m["digest"] for m in index["manifests"]}


def test_the_registry_holds_a_signature_an_sbom_and_a_test_record_for_each_image(
        release: Release) -> None:
    for image in release.first.images:
        found = _referrers(release, f"{NS}/{image.name}", image.digest)
        assert image.sbom is not None and image.signature is not None
        assert found["application/vnd.cyclonedx+json"] == image.sbom.digest
        assert found["application/vnd.imagekit.test-record.v1+json"] == image.tested.record
        assert any("sigstore" in kind or kind.endswith("empty.v1+json") for kind in found)
        # The provenance that binds the image and its SIF, read as in-toto's own bindings
        # read a statement, and signed with the site's key.
        assert image.provenance is not None and image.provenance.signed
        assert found["application/vnd.in-toto+json"] == image.provenance.digest
        document = release.registry.layer(f"{NS}/{image.name}", image.provenance.digest)
        statement = Statement.copy_from_pb(
            json_format.Parse(document.decode(), statement_pb2.Statement()))
        statement.validate()
        subjects = {s.name: s.digest["sha256"] for s in statement.pb.subject}
        assert subjects[image.repository] == image.digest.removeprefix("sha256:")
        if image.sif is not None:
            on_disk = hashlib.sha256((release.dist / image.sif.filename).read_bytes())
            assert subjects[image.sif.filename] == on_disk.hexdigest() == image.sif.sha256
            internal = statement.pb.predicate["buildDefinition"]["internalParameters"]
            assert internal["sifConvertedFrom"] == image.image_id
        attested = subprocess.run(
            [shutil.which("cosign", path=release.env["PATH"]) or "cosign", "verify", "--key",
             str(release.cosign_pub), "--insecure-ignore-tlog=true", "--allow-http-registry",
             image.provenance.reference], capture_output=True, text=True)
        assert attested.returncode == 0, attested.stderr
        # The real verifier, as a cluster admission policy would run it.
        checked = subprocess.run(
            [shutil.which("cosign", path=release.env["PATH"]) or "cosign", "verify", "--key",
             str(release.cosign_pub), "--insecure-ignore-tlog=true", "--allow-http-registry",
             image.reference], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        assert json.loads(checked.stdout)[0]["critical"]["image"][
            "docker-manifest-digest"] == image.digest
        # The SBOM beside the catalog is the one in the registry, and lists what is inside.
        sbom = json.loads((release.dist / image.sbom.path).read_text())
        assert sbom["metadata"]["component"]["version"] == image.image_id
        purls = {c["purl"] for c in sbom["components"]}
        assert any(p.startswith("pkg:deb/debian/python3@") for p in purls)
        assert any(p.startswith("pkg:pypi/jupyterlab@") for p in purls)


def test_the_sif_carries_its_sbom_and_apptainer_verifies_its_signature(
        release: Release) -> None:
    scipy = release.first.image("scipy")
    assert scipy.sif is not None and scipy.sif.signed_by
    sif = release.dist / scipy.sif.filename
    runner = ap.Apptainer(ap.ensure_root())
    inside = _give(runner, sif)
    listing = runner.run("apptainer", "sif", "list", inside).stdout
    [row] = [line for line in listing.splitlines() if "SBOM" in line.upper()]
    dumped = runner.run("apptainer", "sif", "dump", row.split("|")[0].strip(), inside).stdout
    assert json.loads(dumped)["metadata"]["component"]["version"] == scipy.image_id
    runner.env["APPTAINER_KEYSDIR"] = "/home/aptest/site-keys"
    key = _give(runner, release.pgp_pub)
    runner.run("apptainer", "key", "import", key)
    verified = runner.run("apptainer", "verify", inside)
    assert scipy.sif.signed_by in verified.stdout + verified.stderr
    # Another key does not verify it.
    runner.env["APPTAINER_KEYSDIR"] = "/home/aptest/other-keys"
    refused = runner.run("apptainer", "verify", inside, check=False)
    assert refused.returncode != 0


def _give(runner: ap.Apptainer, path: Path) -> str:
    """A copy of a file in the unprivileged user's home (pytest's folders are root's)."""
    copy = runner.home / path.name
    shutil.copy(path, copy)
    os.chown(copy, ap.UID, ap.GID)
    return f"/home/{ap.USER}/{path.name}"


def test_verify_passes_then_catches_a_moved_tag_and_a_wrong_key(release: Release) -> None:
    ok = release.run("verify", "scipy", "--key", str(release.cosign_pub), "--json")
    findings = {f["check"]: f for f in json.loads(ok.stdout)["findings"]}
    assert set(findings) == {"digest", "signature", "sbom", "test record", "sif",
                             "provenance"}
    assert all(f["ok"] for f in findings.values()), findings
    assert "was made from" in findings["provenance"]["evidence"]
    assert "cosign verified the statement" in findings["provenance"]["evidence"]
    # latest moved by hand to another image: verify says so and fails.
    scipy, base = release.first.image("scipy"), release.first.image("base")
    _, manifest = release.registry.manifest(f"{NS}/base", base.digest)
    url = f"http://{release.address}/v2/{NS}/scipy/manifests/latest"
    base_bytes = release.registry.get(f"{NS}/base/manifests/{base.digest}",
                                      Accept=manifest["mediaType"]).content
    # The blobs must exist in scipy's repository for the registry to take the manifest:
    # base's layers are scipy's first layers, and its config is mounted across.
    requests.post(f"http://{release.address}/v2/{NS}/scipy/blobs/uploads/?mount="
                  f"{manifest['config']['digest']}&from={NS}/base", timeout=30)
    assert requests.put(url, data=base_bytes, timeout=30,
                        headers={"Content-Type": manifest["mediaType"]}).status_code == 201
    moved = release.run("verify", "scipy", "--key", str(release.cosign_pub), check=False)
    assert moved.returncode == 1 and "latest" in moved.stdout and "point elsewhere" in moved.stdout
    scipy_bytes = release.registry.get(f"{NS}/scipy/manifests/{scipy.digest}",
                                       Accept=manifest["mediaType"]).content
    assert requests.put(url, data=scipy_bytes, timeout=30,
                        headers={"Content-Type": manifest["mediaType"]}).status_code == 201
    wrong = release.cosign_pub.parent / "other"
    wrong.mkdir(exist_ok=True)
    subprocess.run([str(Path(release.env["PATH"].split(":")[0]) / "cosign"),
                    "generate-key-pair"], cwd=wrong, check=True, capture_output=True,
                   env={**os.environ, "COSIGN_PASSWORD": ""})
    refused = release.run("verify", "scipy", "--key", str(wrong / "cosign.pub"), check=False)
    assert refused.returncode == 1 and "FAIL signature" in refused.stdout
    assert "FAIL provenance" in refused.stdout


def test_the_site_renders_every_page_and_links_the_sboms(release: Release) -> None:
    seen = check_site(release.dist, ARTIFACTS)
    assert set(seen) == {"index.html", "base.html", "scipy.html"}
    assert any(link.endswith("/sbom/scipy.cdx.json") for link in seen["scipy.html"]["links"])
    assert (ARTIFACTS / "index-1280.png").is_file() and (ARTIFACTS / "scipy-390.png").is_file()


def test_pin_rolls_back_and_prune_keeps_what_a_catalog_names(release: Release) -> None:
    first = release.first.image("scipy")
    # A new scipy (a rebuild is a new image: its build time is a label), tested, published.
    release.run("build", "scipy", "--force", "--format", "docker", "--format", "sif",
                "--sif-method", "native", "--plain")
    release.run("test", "scipy")
    release.run("publish", "base", "scipy")
    second = release.published().image("scipy")
    assert second.digest != first.digest
    # The rollback: one command, the tags and every export follow.
    pinned = release.run("publish", "--pin", f"scipy={first.digest}", "--json")
    assert json.loads(pinned.stdout)["images"][0]["reference"] == first.reference
    now = release.published().image("scipy")
    assert now.digest == first.digest and now.tested == first.tested
    assert [p.digest for p in now.history] == [second.digest]
    assert release.registry.manifest(f"{NS}/scipy", "latest")[0] == first.digest
    spawner = (release.dist / "exports" / "kubespawner.yaml").read_text()
    assert first.reference in spawner and second.reference not in spawner
    # A third scipy pushed by a runner, never published: no catalog names it.
    release.run("build", "scipy", "--force", "--format", "docker", "--format", "sif",
                "--sif-method", "native", "--plain")
    release.run("test", "scipy")
    [staged] = json.loads(release.run("push", "scipy", "--json").stdout)["images"]
    third = staged["reference"].rpartition("@")[2]
    scipy = suite.repository("scipy", NS, registry=release.address)
    # The race: a prune between a runner's push and its run's publish keeps the push, which
    # is younger than the grace period (and its SIF and record with it).
    catalogs = history(release.registry)
    assert len(catalogs) == 3  # the first release, the second scipy, the rollback
    racing = json.loads(release.run("prune", "--keep", "1", "--json").stdout)
    assert f"{scipy}@{third}" in racing["young"] and f"{scipy}@{third}" not in racing["deleted"]
    assert release.registry.manifest(f"{NS}/scipy", third)
    assert racing["deleted_catalogs"] == catalogs[:2]
    # Past the grace period (none here), nothing names it: it goes.
    dry = json.loads(release.run("prune", "--keep", "1", "--grace-hours", "0", "--dry-run",
                                 "--json").stdout)
    assert f"{scipy}@{third}" in dry["deleted"]
    assert release.registry.manifest(f"{NS}/scipy", third)  # a dry run deletes nothing
    report = json.loads(release.run("prune", "--keep", "1", "--grace-hours", "0",
                                    "--json").stdout)
    assert report["kept_catalogs"] == catalogs[2:]
    assert report["deleted_catalogs"] == []  # the racing prune took them already
    assert f"{scipy}@{third}" in report["deleted"]
    gone = release.registry.get(f"{NS}/scipy/manifests/{third}")
    assert gone.status_code == 404
    # What the kept catalog names stays: the pinned image, its history, base.
    for digest in (first.digest, second.digest):
        assert release.registry.get(f"{NS}/scipy/manifests/{digest}").status_code == 200
    verified = release.run("verify", "scipy", "--key", str(release.cosign_pub))
    assert verified.returncode == 0


def history(registry: LocalRegistry) -> list[str]:
    """The catalog's history tags, oldest first."""
    return sorted((t for t in registry.tags(f"{NS}/catalog") if t.startswith("history-")),
                  key=lambda t: int(t.removeprefix("history-")))


def test_two_publishes_racing_from_two_clones_both_land(release: Release) -> None:
    """Two clones publish at once (CI runs per ref): the first has read `latest` and is
    held there while the second publishes whole; then the first goes on. Both catalogs are
    in the history under tags of their own, and `latest` holds what each of them changed."""
    release.run("build", "scipy-hpc", "--format", "docker", "--format", "sif",
                "--sif-method", "native", "--plain")
    release.run("build", "scipy-kubeflow", "--format", "docker", "--plain")
    clone = release.catalog.parent.parent / "clone"
    shutil.copytree(release.catalog.parent, clone, symlinks=True,
                    ignore=shutil.ignore_patterns("*.sif"))
    before = history(release.registry)
    scipy = json.loads(release.registry.layer(f"{NS}/catalog", "latest"))
    env = {**os.environ, **release.env, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    held = subprocess.Popen([sys.executable, "-m", "imagekit", "publish", "--skip-tests",
                             "scipy-kubeflow", "--catalog", str(clone / "catalog.yaml")],
                            cwd=clone, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert held.stdout is not None
    said = []
    try:
        for line in held.stdout:
            said.append(line)
            if line.startswith("[scipy-kubeflow] pushing"):  # `latest` read, nothing pushed
                os.kill(held.pid, signal.SIGSTOP)
                break
        whole = release.run("publish", "--skip-tests", "scipy-hpc")
    finally:
        os.kill(held.pid, signal.SIGCONT)
    rest, _ = held.communicate(timeout=600)
    out = "".join(said) + rest
    assert held.returncode == 0, out
    assert "another publication landed meanwhile" in out, out
    assert "another publication" not in whole.stdout + whole.stderr
    after = history(release.registry)
    added = [t for t in after if t not in before]
    assert len(added) == 2, (before, after)  # no history tag reused
    own = {t: {i["name"]: i["digest"] for i in
               json.loads(release.registry.layer(f"{NS}/catalog", t))["images"]}
           for t in added}
    assert "scipy-hpc" in own[added[0]] and "scipy-kubeflow" not in own[added[0]]
    assert "scipy-kubeflow" in own[added[1]] and "scipy-hpc" not in own[added[1]]
    latest = {i["name"]: i["digest"]
              for i in json.loads(release.registry.layer(f"{NS}/catalog", "latest"))["images"]}
    assert latest["scipy-hpc"] == own[added[0]]["scipy-hpc"]
    assert latest["scipy-kubeflow"] == own[added[1]]["scipy-kubeflow"]
    assert latest["scipy"] == {i["name"]: i["digest"] for i in scipy["images"]}["scipy"]
    # The clone that wrote `latest` last has it in its dist/ too.
    held_dist = json.loads((clone / "dist" / "catalog.json").read_text())
    assert {i["name"] for i in held_dist["images"]} >= {"scipy-hpc", "scipy-kubeflow"}


def test_tag_lists_are_read_page_by_page(release: Release) -> None:
    """Hosted registries hand tag lists out in pages (alphabetically, so the newest history
    tags come last); Debian's registry does not page at all. Through a forwarder that pages
    as the distribution spec says, two tags at a time, what publishing and pruning read (the
    tags, the catalog's history, the base a publication starts from) is what the registry
    holds, read over several pages."""
    catalog = load_catalog(release.catalog)
    direct = Registry(catalog)
    with paging(release.address, page=2) as forwarder:
        paged_catalog = dataclasses.replace(catalog, registry=forwarder.address)
        paged = Registry(paged_catalog)
        for image in ("catalog", "scipy", "sif/scipy"):
            every = release.registry.tags(f"{NS}/{image}")
            assert len(every) > 2, every  # more than one page
            asked = len(forwarder.pages)
            assert paged.tags(paged_catalog.repository(image)) == every
            assert len(forwarder.pages) - asked == (len(every) + 1) // 2, forwarder.pages
        repository = catalog.repository(CATALOG_REPOSITORY)
        newest = history_tags(direct, repository)
        assert len(newest) >= 3 and newest == history(release.registry)
        assert history_tags(paged, paged_catalog.repository(CATALOG_REPOSITORY)) == newest
        assert base_of(paged_catalog, paged).seen == base_of(catalog, direct).seen


def test_bad_pins_and_keeps_are_refused_before_anything_moves(release: Release) -> None:
    before = release.registry.manifest(f"{NS}/catalog", "latest")[0]
    for args, words in ((["publish", "--pin", "scipy"], "expected IMAGE=DIGEST"),
                        (["publish", "--pin", "nope=sha256:" + "0" * 64], "IMAGE=DIGEST"),
                        (["publish", "--pin", "scipy=sha256:" + "0" * 64],
                         "no published catalog names this digest")):
        refused = release.run(*args, check=False)
        assert refused.returncode == 2 and words in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    assert release.registry.manifest(f"{NS}/catalog", "latest")[0] == before
    refused = release.run("prune", "--keep", "0", check=False)
    assert refused.returncode == 2
