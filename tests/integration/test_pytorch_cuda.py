"""`imagekit build pytorch-cuda`, the command the toolkit is known by, for real: PyPI's CUDA
torch (about 3 GB of wheels), tagged with the CUDA it carries, starting without a GPU, and
rebuilt after a change above torch without downloading torch again."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration import background, suite
from tests.integration.conftest import build_images, failed, imagekit, smoke_test

pytestmark = [pytest.mark.integration, pytest.mark.heavy, pytest.mark.docker_engine]

REF = suite.repository("pytorch-cuda")


@pytest.fixture(scope="module", autouse=True)
def _built() -> None:
    """pytorch-cuda built (about 3 GB of wheels) and tested in place; the tests take both
    from the session."""
    build_images("pytorch-cuda")
    smoke_test("pytorch-cuda")


def _python(client: Any, ref: str, code: str) -> str:
    out: bytes = client.containers.run(ref, ["-c", code], entrypoint=["python3"], remove=True)
    return out.decode()


def test_builds_passes_its_checks_and_is_tagged_with_its_cuda(
        build: Callable[..., Any], smoke: Callable[[str], dict[str, Any]], client: Any) -> None:
    [outcome] = [o for o in build("pytorch-cuda") if o["image"] == "pytorch-cuda"]
    assert outcome["status"] in ("built", "cached"), outcome
    report = smoke("pytorch-cuda")
    assert report["exit"] == 0, failed(report)
    # The tag names the CUDA that torch inside was built against (cuda-13.2 today).
    cuda = _python(client, f"{REF}:latest", "import torch; print(torch.version.cuda)").strip()
    assert re.fullmatch(r"\d+\.\d+", cuda), cuda
    tags = {t.rpartition(":")[2] for t in client.images.get(f"{REF}:latest").tags}
    assert f"cuda-{cuda}" in tags, tags
    assert any(t.startswith("torch-2.") for t in tags), tags


def test_starts_without_a_gpu_and_carries_the_nvidia_variables(
        build: Callable[..., Any], client: Any) -> None:
    build("pytorch-cuda")
    out = _python(client, f"{REF}:latest",
                  "import os, torch; print(torch.cuda.is_available(), torch.cuda.device_count());"
                  "print(os.environ['NVIDIA_VISIBLE_DEVICES'],"
                  " os.environ['NVIDIA_DRIVER_CAPABILITIES'])")
    assert out.split() == ["False", "0", "all", "compute,utility"], out
    # The NVIDIA container runtime reads these from the image's config, not from a shell.
    env = client.images.get(f"{REF}:latest").attrs["Config"]["Env"]
    assert "NVIDIA_VISIBLE_DEVICES=all" in env
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in env


@pytest.fixture
def cuda_plus(tmp_path: Path, client: Any) -> Iterator[Path]:
    """The catalog under its own namespace, with one pip package added to pytorch-cuda."""
    catalog = suite.copy_project(tmp_path, "cudaplus")
    stack = tmp_path / "stacks/pytorch-cuda.yaml"
    spec = yaml.safe_load(stack.read_text())
    spec["pip"] = [*spec["pip"], "tabulate"]
    stack.write_text(yaml.safe_dump(spec, sort_keys=False))
    yield catalog
    for image in client.images.list():
        if any("/cudaplus/" in tag for tag in image.tags):
            client.images.remove(image.id, force=True)


def _sent_to(bridge: str) -> int:
    """Bytes the kernel has sent through a bridge: what its containers received."""
    return int(Path(f"/sys/class/net/{bridge}/statistics/tx_bytes").read_text())


def _cache_mounts(client: Any) -> list[str]:
    """The engine's cache mounts as `docker system df -v` shows them: what a failure needs."""
    return [f"{r['ID'][:12]} {r['Size'] / 2**20:.0f} MiB created {r['CreatedAt']} "
            f"used {r.get('UsageCount')}x: {r['Description'][:60]}"
            for r in client.df()["BuildCache"] or [] if r["Type"] == "exec.cachemount"]


def test_a_change_above_torch_does_not_download_torch_again(
        build: Callable[..., Any], client: Any, cuda_plus: Path) -> None:
    build("pytorch-cuda")
    # Settled: tabulate joins the settled part, so the whole lock is installed again (as
    # after a settled pin moved), from the installer's cache mount. Left as the added part
    # it would install in a layer of its own and torch's layer would simply be kept.
    said = imagekit("lock", "pytorch-cuda", "--settle", catalog=cuda_plus).stdout
    assert "added since it was settled" not in said
    # The parents under the new namespace first, outside the measure: when BuildKit's garbage
    # collection has dropped base's layers, rebuilding them fetches Debian packages again,
    # which is not what this test is about.
    imagekit("build", "scipy", "--format", "docker", "--plain", catalog=cuda_plus)
    mounts = _cache_mounts(client)
    # What the suite's engine's build steps receive is measured: bytes the kernel sent them
    # through that engine's bridge (uv's downloads run in a build step). The setups beside
    # the suite have engines and bridges of their own (or run on the host, as Apptainer
    # does), so they go on; those registered in place use this engine and are held back.
    bridge = client.networks.get("bridge").attrs["Options"][
        "com.docker.network.bridge.name"]
    with background.quiet(beside=False):
        before = _sent_to(bridge)
        result = imagekit("build", "pytorch-cuda", "--format", "docker", "--plain",
                          catalog=cuda_plus)
        received = _sent_to(bridge) - before
    ref = suite.ref("pytorch-cuda", "cudaplus")
    out = _python(client, ref, "import tabulate, torch; print(torch.__version__)")
    assert out.strip() == _python(client, f"{REF}:latest",
                                  "import torch; print(torch.__version__)").strip()
    # torch and its CUDA libraries are about 3 GB; the installer took them from its cache.
    uv = [line for line in (result.stdout + result.stderr).splitlines()
          if re.search(r"\b(Download|Prepared|Installed|Resolved|Using|Audited)", line)]
    assert received < 100 * 2**20, "\n".join(
        [f"the rebuild received {received / 2**20:.0f} MiB", "cache mounts before:", *mounts,
         "after:", *_cache_mounts(client), "installer:", *uv[-40:]])
