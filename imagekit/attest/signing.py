"""Signatures, with the tools their verifiers use: cosign for images, Apptainer for SIFs.

Keys are the site's, given by path in the environment, never on a command line:

* IMAGEKIT_COSIGN_KEY: a cosign private key (`cosign generate-key-pair`); its password, if
  any, in IMAGEKIT_COSIGN_PASSWORD. Images are signed by digest, offline (no transparency
  log, no Fulcio): the signature is an OCI referrer of the image in the site's registry.
* IMAGEKIT_SIF_SIGNING_KEY: an armored OpenPGP secret key without a passphrase (Apptainer's
  `sign` prompts for one on a terminal, which CI has not), imported into a throwaway keyring
  for `apptainer sign`; `apptainer verify` with the public key accepts the SIF.

Registry credentials reach cosign through a throwaway Docker config, not its flags.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imagekit.credentials import registry_auth_file
from imagekit.errors import BuildFailed, ImagekitError, Problem
from imagekit.run import run

COSIGN_KEY, COSIGN_PASSWORD = "IMAGEKIT_COSIGN_KEY", "IMAGEKIT_COSIGN_PASSWORD"
SIF_KEY = "IMAGEKIT_SIF_SIGNING_KEY"
# Offline: sign and verify against the key alone, no public-good Sigstore services.
COSIGN_OFFLINE = ["--use-signing-config=false", "--tlog-upload=false"]


def _key(variable: str) -> Path | None:
    value = os.environ.get(variable)
    if not value:
        return None
    path = Path(value)
    if not path.is_file():
        raise ImagekitError(Problem(None, variable, f"{value} is not a file"))
    return path


def cosign_key() -> Path | None:
    """The site's cosign key, when images are to be signed; checked before any work."""
    key = _key(COSIGN_KEY)
    if key is not None and shutil.which("cosign") is None:
        raise ImagekitError(Problem(None, COSIGN_KEY, "is set but cosign is not on PATH "
                                                      "(Debian sid packages it)"))
    return key


def sif_key() -> Path | None:
    key = _key(SIF_KEY)
    if key is not None and shutil.which("apptainer") is None and shutil.which(
            "singularity") is None:
        raise ImagekitError(Problem(None, SIF_KEY, "is set but neither apptainer nor "
                                                   "singularity is on PATH to sign with"))
    return key


def _output(argv: list[str], env: dict[str, str], timeout: int = 600) -> str:
    """imagekit's one way of running a program (run.run: logged, failing with the tail of
    its stderr), with this module's environment."""
    return run(argv, env=env, timeout=timeout).stdout.decode()


@contextmanager
def _cosign_env(registry: str, credentials: tuple[str, str] | None) -> Iterator[dict[str, str]]:
    env = {**os.environ, "COSIGN_PASSWORD": os.environ.get(COSIGN_PASSWORD, ""),
           "COSIGN_YES": "true"}
    with tempfile.TemporaryDirectory(prefix="imagekit-cosign-") as tmp:
        if credentials is not None:
            registry_auth_file(Path(tmp), registry, *credentials)
            env["DOCKER_CONFIG"] = tmp
        yield env


def _registry_flags(insecure: bool, ca_bundle: str | None) -> list[str]:
    flags = ["--allow-http-registry", "--allow-insecure-registry"] if insecure else []
    if ca_bundle:
        flags.append(f"--registry-cacert={ca_bundle}")
    return flags


def public_key_sha256(key: Path) -> str:
    """sha256 of the public half of a cosign key: what the catalog says it was signed with."""
    env = {**os.environ, "COSIGN_PASSWORD": os.environ.get(COSIGN_PASSWORD, "")}
    text = _output(["cosign", "public-key", "--key", str(key)], env)
    return hashlib.sha256(text.strip().encode()).hexdigest()


def sign_image(reference: str, key: Path, *, insecure: bool, ca_bundle: str | None,
               credentials: tuple[str, str] | None) -> None:
    """Sign REPOSITORY@DIGEST with the site's cosign key; the signature goes next to it."""
    registry = reference.split("/", 1)[0]
    with _cosign_env(registry, credentials) as env:
        _output(["cosign", "sign", "--key", str(key), *COSIGN_OFFLINE,
                 *_registry_flags(insecure, ca_bundle), reference], env)


def verify_image(reference: str, public_key: Path, *, insecure: bool, ca_bundle: str | None,
                 credentials: tuple[str, str] | None) -> str:
    """`cosign verify` of REPOSITORY@DIGEST against a public key: the payload it checked."""
    registry = reference.split("/", 1)[0]
    with _cosign_env(registry, credentials) as env:
        return _output(["cosign", "verify", "--key", str(public_key),
                        "--insecure-ignore-tlog=true", *_registry_flags(insecure, ca_bundle),
                        reference], env)


def _apptainer() -> str:
    tool = shutil.which("apptainer") or shutil.which("singularity")
    if tool is None:
        raise ImagekitError("neither apptainer nor singularity is on PATH")
    return tool


def sign_sif(sif: Path, key: Path) -> str:
    """`apptainer sign` the SIF with the site's PGP key; the key's fingerprint."""
    tool = _apptainer()
    with tempfile.TemporaryDirectory(prefix="imagekit-keys-") as keys:
        os.chmod(keys, 0o700)
        env = {**os.environ, "APPTAINER_KEYSDIR": keys, "SINGULARITY_KEYSDIR": keys}
        _output([tool, "key", "import", str(key)], env)
        listing = _output([tool, "key", "list", "--secret"], env)
        _output([tool, "sign", "--keyidx", "0", str(sif)], env, timeout=1800)
    return _fingerprint(listing)


def _fingerprint(listing: str) -> str:
    for line in listing.splitlines():
        words = line.replace(":", " ").split()
        if len(words) >= 2 and words[0].upper() in ("F", "FINGERPRINT"):
            return words[-1].upper()
    raise BuildFailed("apptainer did not list the fingerprint of the SIF signing key")
