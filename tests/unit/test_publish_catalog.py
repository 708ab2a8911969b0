"""Composing the published catalog: what is kept, what falls back, what history remembers.
(The registry side is tested for real in tests/integration/test_publish.py.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from imagekit.exports import ExportFile
from imagekit.model import Catalog
from imagekit.publish.release import compose, history, write_dist
from imagekit.publish.retention import named_digests
from imagekit.published.catalog import PlatformImage, PublishedCatalog, PublishedImage, read
from tests.hub import SAMPLE


@pytest.fixture
def sample() -> PublishedCatalog:
    return read(SAMPLE)


def test_defaults_follow_the_catalog_and_empty_groups_are_left_out(
        catalog: Catalog, sample: PublishedCatalog) -> None:
    said: list[str] = []
    fresh = {name: sample.image(name) for name in ("base", "scipy", "vscode")}
    new = compose(catalog, None, fresh, said.append)
    assert new.defaults == {"jupyter": "scipy", "code-server": "vscode"}
    assert [i.name for i in new.images if i.default] == ["scipy", "vscode"]
    assert "rstudio" in {lo.name for lo in new.left_out}
    assert any("no rstudio image is published" in line for line in said)


def test_a_default_that_is_not_published_falls_back_to_the_first_of_its_type(
        catalog: Catalog, sample: PublishedCatalog) -> None:
    said: list[str] = []
    new = compose(catalog, None, {"r": sample.image("r"), "base": sample.image("base")},
                  said.append)
    assert new.defaults["jupyter"] == "base"  # catalog order: base comes first
    assert any("default jupyter image scipy is not published" in line for line in said)


def test_entries_not_published_this_time_are_kept_with_fresh_metadata(
        catalog: Catalog, sample: PublishedCatalog) -> None:
    stale = sample.image("scipy").model_copy(update={"description": "old words",
                                                     "consumers": ["armada"]})
    previous = sample.model_copy(update={"images": [stale]})
    new = compose(catalog, previous, {"base": sample.image("base")}, lambda _: None)
    scipy = new.image("scipy")
    assert scipy.digest == stale.digest  # what the registry holds is unchanged
    assert scipy.description == catalog.images["scipy"].description
    assert "batchspawner" in scipy.consumers


def test_history_keeps_every_earlier_digest_once_newest_first(sample: PublishedCatalog) -> None:
    first = sample.image("base")
    assert history(None, first.digest) == []
    assert history(first, first.digest) == []  # republished unchanged: nothing to retire
    second: PublishedImage = first.model_copy(update={
        "digest": "sha256:" + "2" * 64, "reference": first.repository + "@sha256:" + "2" * 64,
        "history": history(first, "sha256:" + "2" * 64)})
    third = history(second, "sha256:" + "3" * 64)
    assert [p.digest for p in third] == ["sha256:" + "2" * 64, first.digest]
    back_again = history(second, first.digest)  # a rollback to the first digest
    assert [p.digest for p in back_again] == ["sha256:" + "2" * 64]


def _two_architectures(image: PublishedImage) -> PublishedImage:
    """The entry as an index of amd64's image (the sample's) and an arm64 one."""
    def digest(c: str) -> str:
        return "sha256:" + c * 64
    amd64 = PlatformImage(platform="linux/amd64", digest=image.digest,
                          reference=image.reference, image_id=image.image_id,
                          tags=image.tags[-1:], size=image.size, tested=image.tested,
                          sif=image.sif, sbom=image.sbom)
    arm64 = amd64.model_copy(update={
        "platform": "linux/arm64", "digest": digest("a"), "image_id": digest("b"),
        "reference": f"{image.repository}@{digest('a')}",
        "sbom": image.sbom.model_copy(update={"digest": digest("c")}) if image.sbom else None,
        "sif": image.sif.model_copy(update={"digest": digest("d")}) if image.sif else None})
    return image.model_copy(update={"digest": digest("e"),
                                    "reference": f"{image.repository}@{digest('e')}",
                                    "platforms": [amd64, arm64]})


def test_an_index_is_checked_as_each_architectures_entry_and_retention_keeps_them(
        sample: PublishedCatalog) -> None:
    indexed = _two_architectures(sample.image("scipy"))
    assert [(v.digest, v.image_id) for v in indexed.views()] == [
        (p.digest, p.image_id) for p in indexed.platforms]
    assert all(v.platforms == [] and v.signature is None for v in indexed.views())
    plain = sample.image("base")
    assert plain.views() == [plain] and plain.members() == []
    # Its members stay named while the index is, and after it is replaced (history).
    members = set(indexed.members())
    assert members == {d for p in indexed.platforms for d in (
        p.digest, p.sbom and p.sbom.digest, p.sif and p.sif.digest) if d} | {
        indexed.sif.digest if indexed.sif else ""} - {""}
    assert len(members) >= 4  # scipy has a SIF
    assert members <= named_digests([sample.model_copy(update={"images": [indexed]})])
    later = indexed.model_copy(update={"digest": "sha256:" + "f" * 64, "platforms": [],
                                       "history": history(indexed, "sha256:" + "f" * 64)})
    assert later.history[0].members == indexed.members()
    assert members <= named_digests([sample.model_copy(update={"images": [later]})])


def test_dist_is_replaced_whole(tmp_path: Path) -> None:
    write_dist(tmp_path, "{}\n", [ExportFile("a.yaml", "a"), ExportFile("b.py", "b")])
    write_dist(tmp_path, '{"x": 1}\n', [ExportFile("a.yaml", "A")])
    assert (tmp_path / "catalog.json").read_text() == '{"x": 1}\n'
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["a.yaml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.json", "exports"]


def test_export_refuses_an_unknown_target_and_a_missing_catalog(
        cli: Callable[..., tuple[int, str]], project: Path) -> None:
    code, output = cli("export", "kubespawnr", "--published", str(SAMPLE))
    assert code == 2 and "unknown export 'kubespawnr'" in output
    assert "did you mean kubespawner?" in output
    code, output = cli("export", "setting", "--catalog", str(project / "catalog.yaml"))
    assert code == 2 and "no published catalog here" in output
    code, output = cli("export", "kubespawner", "--file", "nope.py", "--published", str(SAMPLE))
    assert code == 2 and "kubespawner.yaml, kubespawner.py" in output


def test_export_writes_what_publish_would(cli: Callable[..., tuple[int, str]],
                                          tmp_path: Path) -> None:
    from imagekit.exports import exporters

    target = tmp_path / "ui.yaml"
    code, _ = cli("export", "kubeflow", "-o", str(target), "--published", str(SAMPLE))
    assert code == 0
    assert target.read_text() == exporters()["kubeflow"](read(SAMPLE))[0].text


def test_publish_names_an_unknown_image(cli: Callable[..., tuple[int, str]]) -> None:
    code, output = cli("publish", "scpy")
    assert code == 2 and "unknown image 'scpy'" in output and "did you mean scipy?" in output
