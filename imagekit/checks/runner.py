"""`imagekit test`: the static checks, then the runtime contract of the image's type."""

from __future__ import annotations

from collections.abc import Callable

from imagekit.checks import CheckResult
from imagekit.checks.contract import CONTRACTS, Target
from imagekit.checks.static import run_static
from imagekit.engine.client import Engine
from imagekit.engine.emulation import environment
from imagekit.errors import ImagekitError
from imagekit.model import Catalog, Image
from imagekit.schema import Platform


def test_image(engine: Engine, catalog: Catalog, image: Image,
               on_result: Callable[[CheckResult], None],
               platform: Platform | None = None) -> Target:
    """Every check of the image built for `platform` (default: the catalog's first); another
    architecture's runs under emulation, slower but the same checks."""
    ref = catalog.ref(image.name, platform=platform)
    info = engine.image(ref)
    if info is None:
        raise ImagekitError(f"{image.name}: {ref} is not built in {engine.name}'s store "
                            f"(run `imagekit build {image.name}`, with the same --engine)")
    # Every container runs the ID resolved here, so a build moving the tag meanwhile cannot
    # make the result describe another image.
    target = Target(engine, info.id, image, env=environment(info.architecture))
    seen = 0

    def flush() -> None:
        nonlocal seen
        for result in target.results[seen:]:
            on_result(result)
        seen = len(target.results)

    run_static(target)
    flush()
    for contract in CONTRACTS[image.runtime.type]:
        contract(target)
        flush()
    return target
