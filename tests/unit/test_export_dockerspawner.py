"""The dockerspawner export, loaded into the real DockerSpawner.

DockerSpawner needs the Docker daemon only to pull and run: its form, the form's parsing and
start()'s image check all run here, and start() is stopped where it would pull.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from tornado.web import HTTPError
from traitlets.config import Config

from imagekit.exports import dockerspawner
from imagekit.published.catalog import PublishedCatalog, read
from tests.hub import SAMPLE, User


class Pulled(Exception):
    """Raised where DockerSpawner.start() would talk to the daemon."""


@pytest.fixture
def published() -> PublishedCatalog:
    return read(SAMPLE)


def load(catalog: PublishedCatalog) -> Config:
    files = dockerspawner.export(catalog)
    assert [f.name for f in files] == ["dockerspawner.py"]
    config = Config()
    exec(files[0].text, {"c": config})  # it is Python for jupyterhub_config.py
    return config


def start(config: Config, form: dict[str, list[str]]) -> str:
    """Submit the spawn form and run DockerSpawner.start() up to the pull; the image it pulls."""
    from dockerspawner import DockerSpawner
    from jupyterhub.objects import Hub

    async def run() -> str:
        spawner = DockerSpawner(config=config, user=User(), hub=Hub())
        spawner.user_options = spawner.options_from_form(form)

        async def pull_image(image: str) -> None:
            raise Pulled(image)

        spawner.pull_image = pull_image
        with pytest.raises(Pulled) as pulled:
            await spawner.start()
        assert spawner.image == pulled.value.args[0]
        return str(pulled.value.args[0])

    return asyncio.run(run())


def test_every_offered_label_starts_its_digest(published: PublishedCatalog) -> None:
    from dockerspawner import DockerSpawner
    from jupyterhub.objects import Hub

    config = load(published)
    form = DockerSpawner(config=config, user=User(), hub=Hub()).options_form
    offered = re.findall(r'<option value="([^"]*)"', form)
    images = published.for_consumer("dockerspawner")
    assert len(offered) == len(images) == 6
    references = {i.reference for i in images}
    started = {start(config, {"image": [value]}) for value in offered}
    assert started == references
    assert all("@sha256:" in ref for ref in started)


def test_the_default_is_the_catalog_default_and_offered_first(published: PublishedCatalog
                                                              ) -> None:
    config = load(published)
    scipy = published.image("scipy").reference
    assert config.DockerSpawner.image == scipy
    assert next(iter(config.DockerSpawner.allowed_images.values())) == scipy
    assert start(config, {}) == scipy  # no form posted: the configured image


def test_an_unlisted_image_is_refused_by_dockerspawner(published: PublishedCatalog) -> None:
    from dockerspawner import DockerSpawner
    from jupyterhub.objects import Hub

    config = load(published)

    async def run() -> None:
        spawner = DockerSpawner(config=config, user=User(), hub=Hub())
        spawner.user_options = {"image": "docker.io/evil/miner:latest"}
        with pytest.raises(HTTPError) as refused:
            await spawner.start()
        assert refused.value.status_code == 400
        assert "not in allowed list" in str(refused.value)
        # Nor is the digest itself accepted in place of its label.
        spawner.user_options = {"image": published.image("r").reference}
        with pytest.raises(HTTPError):
            await spawner.start()

    asyncio.run(run())


def test_labels_survive_dockerspawners_form(published: PublishedCatalog) -> None:
    nasty = 'Has "quotes", it\'s <b>bold</b> & a \\ backslash.'
    images = [i.model_copy(update={"description": nasty}) for i in published.images]
    catalog = published.model_copy(update={"images": images})
    config = load(catalog)
    assert "pytorch-cuda: Has quotes, its bbold/b a backslash" in \
        config.DockerSpawner.allowed_images
    assert start(config, {"image": ["pytorch-cuda: Has quotes, its bbold/b a backslash"]}) \
        == catalog.image("pytorch-cuda").reference
    assert dockerspawner.export(catalog) == dockerspawner.export(catalog)  # deterministic
