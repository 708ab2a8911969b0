"""Site URLs that may carry credentials (`https://user:password@host/...`).

A credential may sit in any package-source URL a site sets (pip indexes, npm registry, apt
mirror, proxies). It must reach the process that needs it and nothing else: no recipe, no
layer, no image config, no SIF, no log line and no command line (`ps` shows argv to every
user of a shared login node). So every renderer and every log line sees `public()` of a URL,
and the build gets the full URL as a BuildKit secret (pip, npm), an apt auth.conf secret
mount (apt), or an environment variable of the docker CLI (proxies, through `--build-arg
NAME` without a value, which reads it from the environment).
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from imagekit.schema import SiteSettings


@dataclass(frozen=True)
class SiteUrl:
    url: str

    @property
    def _parts(self) -> urllib.parse.SplitResult:
        return urllib.parse.urlsplit(self.url)

    @property
    def has_credentials(self) -> bool:
        return "@" in self._parts.netloc

    @property
    def public(self) -> str:
        parts = self._parts
        host = parts.netloc.rpartition("@")[2]
        return urllib.parse.urlunsplit(parts._replace(netloc=host))

    @property
    def username(self) -> str:
        return urllib.parse.unquote(self._parts.netloc.rpartition("@")[0].partition(":")[0])

    @property
    def password(self) -> str:
        return urllib.parse.unquote(self._parts.netloc.rpartition("@")[0].partition(":")[2])

    def apt_auth(self) -> str:
        """An apt_auth.conf(5) entry. Without a scheme apt applies an entry to https only."""
        parts = self._parts
        machine = parts.netloc.rpartition("@")[2] + parts.path.rstrip("/")
        return f"machine {parts.scheme}://{machine} login {self.username} " \
               f"password {self.password}\n"


def public(url: str | None) -> str | None:
    return None if url is None else SiteUrl(url).public


def site_urls(site: SiteSettings) -> dict[str, str]:
    """Every URL setting of the site, by its field name."""
    urls = {
        "apt_mirror": site.apt_mirror,
        "pip_index_url": site.pip_index_url,
        "pip_extra_index_url": site.pip_extra_index_url,
        "npm_registry": site.npm_registry,
    }
    if site.proxy is not None:
        urls |= {"proxy.http": site.proxy.http, "proxy.https": site.proxy.https}
    return {name: url for name, url in urls.items() if url}


def secret_words(site: SiteSettings) -> tuple[str, ...]:
    """The strings that must never be shown: the userinfo of every site URL."""
    words: list[str] = []
    for url in site_urls(site).values():
        site_url = SiteUrl(url)
        if site_url.has_credentials:
            userinfo = urllib.parse.urlsplit(url).netloc.rpartition("@")[0]
            words += [userinfo, site_url.password, urllib.parse.unquote(userinfo)]
    return tuple(sorted({w for w in words if len(w) >= 4}, key=len, reverse=True))


def redact(text: str, words: Iterable[str]) -> str:
    for word in words:
        text = text.replace(word, "***")
    return text


def registry_auth_file(folder: Path, host: str, username: str, password: str) -> Path:
    """A Docker config (`config.json`, 0600) holding one registry's credentials, in a folder
    the caller owns and removes: what cosign and podman read instead of a command line."""
    config = folder / "config.json"
    config.touch(mode=0o600)
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    config.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return config
