"""`imagekit site`: the catalog as people read it, checked in a real browser (Debian's
headless Chromium) at a phone's width and a wide screen's."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from imagekit.published.catalog import read
from tests.browser import check_site

Cli = Callable[..., tuple[int, str]]
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests/data/published-catalog.json"
ARTIFACTS = ROOT / "artifacts"


def _dist(tmp_path: Path, text: str | None = None) -> Path:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "catalog.json").write_text(text if text is not None else SAMPLE.read_text())
    exports = dist / "exports"
    exports.mkdir()
    from imagekit.exports import export_all

    for f in export_all(read(dist / "catalog.json")):
        (exports / f.name).write_text(f.text)
    return dist


def test_every_page_renders_fits_a_phone_and_every_link_answers(tmp_path: Path,
                                                                cli: Cli) -> None:
    dist = _dist(tmp_path)
    code, output = cli("site", "--published", str(dist / "catalog.json"),
                       "--output", str(dist / "site"))
    assert code == 0, output
    catalog = read(dist / "catalog.json")
    seen = check_site(dist, ARTIFACTS / "site-sample")
    assert set(seen) == {"index.html", *(f"{i.name}.html" for i in catalog.images)}
    index = seen["index.html"]
    for image in catalog.images:
        assert any(link.endswith(f"/site/{image.name}.html") for link in index["links"])
        page = seen[f"{image.name}.html"]
        assert page["headings"][0] == image.name
        assert {"Image", "Run it", "Tests", "Packages"} <= set(page["headings"])
    # An image with consumers links the exports that offer it; they answered above.
    scipy = seen["scipy.html"]["links"]
    assert any(link.endswith("/exports/kubespawner.yaml") for link in scipy)
    assert (ARTIFACTS / "site-sample/index-390.png").stat().st_size > 10_000


def test_the_pages_carry_the_digests_commands_packages_and_checks(tmp_path: Path,
                                                                  cli: Cli) -> None:
    dist = _dist(tmp_path)
    assert cli("site", "--published", str(dist / "catalog.json"), "--output",
               str(dist / "site"))[0] == 0
    catalog = read(dist / "catalog.json")
    gpu = next(i for i in catalog.images if i.gpu)
    page = (dist / "site" / f"{gpu.name}.html").read_text()
    assert f"docker run --rm --gpus all -p {gpu.port}:{gpu.port} {gpu.reference}" in page
    assert gpu.sif is not None and f"apptainer run --nv {gpu.sif.filename}" in page
    for check in gpu.tested.checks:
        assert check in page
    for name, version in gpu.packages.pip.items():
        assert f"<td>{name}</td><td>{version}</td>" in page


def test_text_from_the_catalog_cannot_change_the_page(tmp_path: Path, cli: Cli) -> None:
    data = json.loads(SAMPLE.read_text())
    data["images"][0]["description"] = '<script>alert("x")</script><a href="/evil">x</a>'
    dist = _dist(tmp_path, json.dumps(data))
    assert cli("site", "--published", str(dist / "catalog.json"), "--output",
               str(dist / "site"))[0] == 0
    page = (dist / "site" / f"{data['images'][0]['name']}.html").read_text()
    assert "<script>" not in page and 'href="/evil"' not in page
    assert "&lt;script&gt;" in page


def test_a_missing_catalog_is_one_clear_error(tmp_path: Path, cli: Cli) -> None:
    code, output = cli("site", "--published", str(tmp_path / "nope.json"))
    assert code == 2 and "no published catalog" in output
    assert not (tmp_path / "site").exists()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_each_sif_image_has_its_batch_job_by_digest(tmp_path: Path, cli: Cli) -> None:
    dist = _dist(tmp_path)
    assert cli("site", "--published", str(dist / "catalog.json"), "--output",
               str(dist / "site"))[0] == 0
    catalog = read(dist / "catalog.json")
    scripts = sorted(p.name for p in (dist / "site").glob("*.sbatch"))
    assert scripts == sorted(f"{i.name}.sbatch" for i in catalog.images if i.sif is not None)
    for image in catalog.images:
        if image.sif is None:
            continue
        script = dist / "site" / f"{image.name}.sbatch"
        text = script.read_text()
        assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
        assert f"SIF={image.sif.reference}\n" in text and "@sha256:" in image.sif.reference
        assert "apptainer run --no-https" in text  # the sample's registry speaks HTTP
        page = (dist / "site" / f"{image.name}.html").read_text()
        assert f'href="{image.name}.sbatch"' in page and f"sbatch {image.name}.sbatch" in page


def test_a_published_name_cannot_change_the_batch_job(tmp_path: Path, cli: Cli) -> None:
    data = json.loads(SAMPLE.read_text())
    hpc = next(i for i in data["images"] if i.get("sif"))
    hpc["name"] = "x\n#SBATCH --uid=0"
    published = tmp_path / "catalog.json"
    published.write_text(json.dumps(data))
    code, output = cli("site", "--published", str(published), "--output",
                       str(tmp_path / "site"))
    index = data["images"].index(hpc)
    assert code == 2 and f"images.{index}.name" in output and "not a valid name" in output, \
        output
    assert not (tmp_path / "site").exists()
