"""The provenance statement that binds an image and its SIF, read by in-toto's own
bindings: an in-toto Statement v1 that validates, with a SLSA provenance v1 predicate that
the SLSA protobuf takes field for field."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement

from imagekit.attest.provenance import (
    BUILD_TYPE,
    PREDICATE_TYPE,
    Dependency,
    Provenance,
    read_statement,
)

IMAGE = "sha256:" + "a" * 64
DIGEST = "sha256:" + "b" * 64
SIF = "c" * 64


def _provenance(**changes: str) -> Provenance:
    fields: dict[str, object] = dict(
        image="scipy", repository="registry.example:5000/site/scipy", digest=DIGEST,
        image_id=IMAGE, platform="linux/amd64", stack="scipy", profiles=("hpc",),
        tree_key="d" * 64,
        dependencies=(Dependency("parent", "e" * 64, "registry.example:5000/site/base"),
                      Dependency("base", "f" * 64, "imagekit/base:bookworm"),
                      Dependency("stacks/scipy.lock", "1" * 64)),
        imagekit="0.1.0", engine="docker 20.10.24", created="2026-12-06T04:00:00Z",
        sif_file="scipy_latest.sif", sif_sha256=SIF, sif_from=IMAGE)
    fields.update(changes)
    return Provenance(**fields)  # type: ignore[arg-type]


def test_the_statement_is_what_in_totos_bindings_accept() -> None:
    text = _provenance().statement().decode()
    statement = Statement.copy_from_pb(json_format.Parse(text, statement_pb2.Statement()))
    statement.validate()
    assert statement.pb.predicate_type == PREDICATE_TYPE
    subjects = {s.name: s.digest["sha256"] for s in statement.pb.subject}
    assert subjects == {"registry.example:5000/site/scipy": "b" * 64, "scipy_latest.sif": SIF}
    # The predicate is SLSA provenance v1 field for field: an unknown field would not parse.
    predicate = json_format.Parse(json.dumps(json.loads(text)["predicate"]),
                                  provenance_pb2.Provenance())
    assert predicate.build_definition.build_type == BUILD_TYPE
    assert predicate.run_details.builder.id
    assert predicate.run_details.builder.version["engine"] == "docker 20.10.24"
    resolved = {d.name: d.digest["sha256"] for d in
                predicate.build_definition.resolved_dependencies}
    assert resolved == {"parent": "e" * 64, "base": "f" * 64, "stacks/scipy.lock": "1" * 64}


def test_reading_it_back_gives_the_binding() -> None:
    bound = read_statement(_provenance().statement())
    assert (bound.image_digest, bound.image_id, bound.sif_sha256, bound.sif_from) == (
        DIGEST, IMAGE, SIF, IMAGE)
    bare = read_statement(_provenance(sif_file="", sif_sha256="", sif_from="").statement())
    assert bare.sif_sha256 == "" and bare.image_digest == DIGEST


@pytest.mark.parametrize("change", [
    lambda s: s.update({"predicateType": "https://slsa.dev/provenance/v0.2"}),
    lambda s: s.update({"_type": "https://in-toto.io/Statement/v0.1"}),
    lambda s: s["predicate"]["buildDefinition"].update({"buildType": "urn:other"}),
    lambda s: s.update({"subject": []}),
    lambda s: s["predicate"].pop("buildDefinition"),
])
def test_another_statement_is_refused(change: Callable[[dict[str, Any]], object]) -> None:
    statement = json.loads(_provenance().statement())
    change(statement)
    with pytest.raises(ValueError):
        read_statement(json.dumps(statement).encode())
