"""Bad input, case by case: one clear line naming the file (or argument) and the field, exit
2, no traceback, and nothing rendered, built, tagged or pushed.

Each case edits a private copy of the project, then runs the real CLI on it with the
engine's address pointing nowhere: any step that reached for the engine, a registry or
the disk before validating would fail differently from the expected message.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imagekit.cli import app

ROOT = Path(__file__).resolve().parents[2]
S, P, C = "stacks/scipy.yaml", "profiles/slurm-host.yaml", "catalog.yaml"
B, X = "stacks/base.yaml", "stacks/extra.yaml"

# (id, file, old text, new text (None: the whole file becomes old), argv, what the error names)
Edit = tuple[str, str | None, str | None, str | bytes | None, list[str], list[str]]
CASES: list[Edit] = [
    # catalog.yaml
    ("catalog-unknown-key", C, "registry:", "registri:", ["validate"], [C, "registri"]),
    ("catalog-registry", C, "registry: 127.0.0.1:5055", "registry: 'http://x'", ["validate"],
     [C, "registry"]),
    ("catalog-no-namespace", C, "namespace: imagekit\n", "", ["validate"], [C, "namespace"]),
    ("catalog-namespace-case", C, "namespace: imagekit", "namespace: ImageKit", ["validate"],
     [C, "namespace"]),
    ("catalog-base-ref", C, "image: imagekit/debian:bookworm", "image: 'Bad Ref'",
     ["validate"], [C, "base.image"]),
    ("catalog-bootstrap-credentials", C, "mirror: http://deb.debian.org/debian",
     "mirror: http://u:p@deb.debian.org/debian", ["validate"], [C, "base.bootstrap.mirror",
                                                                "credentials"]),
    ("catalog-max-age", C, "  pull: true\n", "  pull: true\n  max_age_days: 0\n", ["validate"],
     [C, "base.max_age_days"]),
    ("catalog-tag", C, "tags: [latest]", "tags: ['la test']", ["validate"], [C, "tags[0]"]),
    ("catalog-unknown-stack", C, "  - stack: r\n", "  - stack: rr\n", ["validate"],
     [C, "stack", "did you mean r?"]),
    ("catalog-unknown-profile", C, "profiles: [slurm-host]", "profiles: [slurm-hots]",
     ["validate"], [C, "profiles[0]", "did you mean slurm-host?"]),
    ("catalog-profile-needs-name", C, "  - stack: r\n", "  - {stack: r, profiles: [kubeflow]}\n",
     ["validate"], [C, "name", "needs a name of its own"]),
    # A name of its own and no profiles: once accepted, then missing from every build.
    ("catalog-name-without-profiles", C, "  - stack: r\n", "  - {name: r-lite, stack: r}\n",
     ["validate"], [C, "images[", ".name", "'r-lite' has no profiles"]),
    ("catalog-duplicate-image", C, "  - stack: r\n", "  - stack: r\n  - stack: r\n",
     ["validate"], [C, "duplicate image name"]),
    ("catalog-format", C, "formats: [docker, sif]\n  - name: scipy-hpc",
     "formats: [docker, oci]\n  - name: scipy-hpc", ["validate"], [C, "formats"]),
    ("catalog-consumer", C, "consumers: [batchspawner]", "consumers: [slurmspawner]",
     ["validate"], [C, "consumers"]),
    ("catalog-batchspawner-needs-sif", C, "  - stack: r\n",
     "  - {stack: r, consumers: [batchspawner]}\n", ["validate"], [C, "consumers", "sif"]),
    ("catalog-cpu", C, "jupyter: {cpu: 1, memory: 2Gi}", "jupyter: {cpu: lots, memory: 2Gi}",
     ["validate"], [C, "resources", "CPU"]),
    ("catalog-memory", C, "jupyter: {cpu: 1, memory: 2Gi}", "jupyter: {cpu: 1, memory: 2GB}",
     ["validate"], [C, "resources", "memory"]),
    ("catalog-default-type", C, "  rstudio: rstudio\n", "  rstudio: rstudio\n  matlab: r\n",
     ["validate"], [C, "defaults"]),
    ("catalog-site-profile", C, "site_profiles: [site-ca, mirrors]",
     "site_profiles: [site-ca, mirror]", ["validate"], [C, "site_profiles[1]"]),
    ("catalog-sif-directory", C, "insecure_registry: true\n",
     "insecure_registry: true\nsif: {directory: shared/sif}\n", ["validate"],
     [C, "sif.directory"]),
    ("catalog-insecure-type", C, "insecure_registry: true", "insecure_registry: 'yes'",
     ["validate"], [C, "insecure_registry"]),
    ("catalog-merge-key", C, "namespace: imagekit\n",
     "namespace: imagekit\n<<: {vendor: x}\n", ["validate"], [C, "merge keys"]),
    ("catalog-not-utf8", C, "vendor: imagekit", b"vendor: imagek\xe9t", ["validate"],
     [C, "not UTF-8"]),
    ("catalog-a-list", C, None, "- registry: x\n", ["validate"], [C, "mapping"]),
    ("catalog-empty", C, None, "", ["validate"], [C, "empty"]),
    ("catalog-duplicate-key", C, "namespace: imagekit\n", "namespace: imagekit\nnamespace: x\n",
     ["validate"], [C, "duplicate key"]),
    ("catalog-bad-yaml", C, "namespace: imagekit\n", "namespace: [imagekit\n", ["validate"],
     [C, "not valid YAML"]),
    ("catalog-python-tag", C, "vendor: imagekit", "vendor: !!python/name:os.system ''",
     ["validate"], [C, "vendor"]),
    # stacks
    ("stack-unknown-key", S, "pip:", "pipp:", ["validate"], [S, "pipp", "did you mean pip?"]),
    ("stack-apt", S, "pip:", "apt: ['Bad Pkg']\npip:", ["validate"], [S, "apt[0]"]),
    ("stack-pip", S, "pip:", "pip:\n  - 'numpy; rm -rf /'", ["validate"], [S, "pip[0]"]),
    ("stack-pip-exclude", B, "pip_exclude:\n  - rfc3987-syntax",
     "pip_exclude:\n  - 'rfc3987-syntax>=1'", ["validate"], [B, "pip_exclude[0]"]),
    ("stack-apt-exclude", B, "  - /usr/share/man/*\n", "  - \"/usr/share/man/*'; rm -rf /\"\n",
     ["validate"], [B, "apt_exclude[1]"]),
    ("stack-pip-prune", B, '  - "*/tests"', '  - "../../etc"', ["validate"],
     [B, "pip_prune[0]"]),
    ("stack-npm", S, "pip:", "npm: ['@@x']\npip:", ["validate"], [S, "npm[0]"]),
    ("stack-pip-layers-pattern", S, "pip:", "pip_layers: ['torch; rm -rf /']\npip:",
     ["validate"], [S, "pip_layers[0]"]),
    ("stack-pip-layers-nothing", S, "pip:", "pip_layers: [numpy, nump*, torchh]\npip:",
     ["render", "scipy"], [S, "pip_layers[2]", "'torchh' matches no package of scipy.lock"]),
    ("stack-pip-layers-twice", S, "pip:", "pip_layers: [Numpy, numpy]\npip:",
     ["validate"], [S, "pip_layers[1]", "listed twice"]),
    ("stack-pip-layers-no-pip", "stacks/r.yaml", "apt:", "pip_layers: [numpy]\napt:",
     ["validate"], ["stacks/r.yaml", "pip_layers", "no pip packages of its own"]),
    ("stack-env-name", S, "pip:", "env: {1X: a}\npip:", ["validate"], [S, "env"]),
    ("stack-env-quote", S, "pip:", "env: {X: 'a\"b'}\npip:", ["validate"], [S, "env.X"]),
    ("stack-env-newline", S, "pip:", "env: {X: \"a\\nRUN x\"}\npip:", ["validate"],
     [S, "env.X"]),
    ("stack-label-key", S, "pip:", "labels: {Bad Key: x}\npip:", ["validate"], [S, "labels"]),
    ("stack-label-build-arg", S, "pip:", "labels: {io.x.y: '{{ A }}'}\npip:", ["validate"],
     [S, "labels.io.x.y", "build argument"]),
    ("stack-file-missing", S, "pip:", "files: [{src: nope.txt, dest: /opt/x}]\npip:",
     ["validate"], [S, "files[0]"]),
    ("stack-file-dest", S, "pip:", "files: [{src: base/start-notebook.sh, dest: opt/x}]\npip:",
     ["validate"], [S, "files[0].dest"]),
    ("stack-file-mode", S, "pip:",
     "files: [{src: base/start-notebook.sh, dest: /opt/x, mode: '999'}]\npip:", ["validate"],
     [S, "files[0].mode"]),
    ("stack-section-in-setup", S, "pip:", "setup: [\"echo a\\n  %files\"]\npip:", ["validate"],
     [S, "setup[0]", "Singularity section"]),
    ("stack-heredoc-end", S, "pip:", "post: [\"echo\\nIMAGEKIT_POST\"]\npip:", ["validate"],
     [S, "post[0]", "heredoc"]),
    ("stack-description-percent", S, "pip:", "description: 'see %post'\npip:", ["validate"],
     [S, "description"]),
    ("stack-extends-unknown", S, "extends: base", "extends: bse", ["validate"],
     [S, "extends", "did you mean base?"]),
    ("stack-cycle", S, "extends: base", "extends: pytorch", ["validate"],
     ["inheritance cycle"]),
    ("stack-port", B, "port: 8888", "port: 70000", ["validate"], [B, "port"]),
    ("stack-uid", B, "uid: 1000", "uid: 0", ["validate"], [B, "uid"]),
    ("stack-entrypoint", B, "entrypoint: [tini, -g, --]", "entrypoint: ['tini -g']",
     ["validate"], [B, "entrypoint[0]"]),
    ("stack-root-port", B, "port: 8888\n", "", ["validate"], [B, "port", "root stack"]),
    ("stack-version-tag", X, None, "extends: base\nversion_tags: [{prefix: 'a b', run: x}]\n",
     ["validate"], [X, "version_tags[0].prefix"]),
    ("stack-http-check", X, None, "extends: base\nchecks: {http: [{path: api}]}\n",
     ["validate"], [X, "checks.http[0].path"]),
    ("stack-execute-check", X, None,
     "extends: base\nchecks: {execute: [{kernel: python3, code: x}]}\n", ["validate"],
     [X, "checks.execute[0].expect"]),
    ("stack-healthcheck", B, "healthcheck: {path: /api,", "healthcheck: {pth: /api,",
     ["validate"], [B, "healthcheck.pth"]),
    ("stack-not-utf8", S, "pip:", b"description: caf\xe9\npip:", ["validate"],
     [S, "not UTF-8"]),
    ("stack-merge-key", S, "pip:", "x: &a {apt: [jq]}\n<<: *a\npip:", ["validate"],
     [S, "merge keys"]),
    ("stack-arg-value", S, "pip:", "args: {VERSION: '1 2'}\npip:", ["validate"],
     [S, "args.VERSION"]),
    ("stack-venv", B, "venv: /opt/venv", "venv: /opt/../venv", ["validate"], [B, "venv"]),
    ("stack-crlf-script", S, "pip:", "post: [\"echo a\\r\\n\"]\npip:", ["validate"],
     [S, "post[0]", "carriage return"]),
    # profiles
    ("profile-unknown-key", P, "binds:", "bind:", ["validate"], [P, "bind"]),
    ("profile-apt-mirror", "profiles/mirrors.yaml", "site:\n",
     "site:\n  apt_mirror: deb.debian.org\n", ["validate"], ["mirrors.yaml",
                                                            "site.apt_mirror"]),
    ("profile-index-quote", "profiles/mirrors.yaml", "site:\n",
     "site:\n  pip_index_url: \"https://x/'simple\"\n", ["validate"],
     ["mirrors.yaml", "site.pip_index_url"]),
    ("profile-proxy", "profiles/mirrors.yaml", "site:\n",
     "site:\n  proxy: {http: 'proxy:3128'}\n", ["validate"], ["mirrors.yaml", "site.proxy.http"]),
    ("profile-site-on-image-profile", P, "binds:", "site: {npm_registry: 'https://npm.x/'}\n"
     "binds:", ["validate"], [P, "site.npm_registry", "site_profiles"]),
    ("profile-bind-relative", P, "  - /etc/slurm\n", "  - etc/slurm\n", ["validate"],
     [P, "binds[0]"]),
    ("profile-snapshot-type", "profiles/mirrors.yaml", "site:\n", "site:\n  apt_snapshot: 2\n",
     ["validate"], ["mirrors.yaml", "site.apt_snapshot"]),
    # pip locks
    ("lock-garbled", "stacks/scipy.lock", "    --hash=sha256:", "    --hash=", ["validate"],
     ["scipy.lock", "--hash=sha256:"]),
    ("lock-stale", "stacks/scipy.yaml", "  - seaborn\n", "  - seaborn\n  - xarray\n",
     ["build", "scipy"], ["scipy.lock", "stale", "imagekit lock scipy"]),
    ("lock-stale-render", "stacks/base.yaml", "  - ipykernel\n", "  - ipykernel\n  - rich\n",
     ["render", "--all"], ["base.lock", "stale"]),
    ("lock-suite", C, "suite: bookworm", "suite: trixie", ["lock", "scipy"],
     [C, "base.bootstrap.suite", "trixie"]),
    # command-line arguments
    ("cli-lock-unknown", None, None, None, ["lock", "scipi"], ["scipi", "did you mean scipy?"]),
    ("cli-lock-no-pip", None, None, None, ["lock", "r"], ["r.yaml", "pip"]),
    ("cli-lock-nothing", None, None, None, ["lock"], ["--all"]),
    ("cli-unknown-image", None, None, None, ["build", "scpy"], ["scpy", "did you mean scipy?"]),
    ("cli-no-image", None, None, None, ["build"], ["--all"]),
    ("cli-builder", None, None, None, ["build", "scipy", "--builder", "kaniko"], ["--builder"]),
    ("cli-format", None, None, None, ["build", "scipy", "--format", "oci"], ["--format"]),
    ("cli-sif-method", None, None, None, ["build", "scipy", "--sif-method", "x"],
     ["--sif-method"]),
    ("cli-tunnel-output", None, None, None,
     ["tunnel", "scipy-hpc", "-o", "missing/dir/job.sbatch"], ["--output", "missing/dir"]),
    ("cli-tunnel-time", None, None, None, ["tunnel", "scipy-hpc", "--time", "soon"],
     ["--time"]),
    ("catalog-sif-level", C, "\nplatforms: [linux/amd64]\n",
     "\nplatforms: [linux/amd64]\nsif: {level: 12}\n", ["validate"],
     [C, "sif.level", "not a gzip level (1-9)"]),
    ("catalog-sif-compression", C, "\nplatforms: [linux/amd64]\n",
     "\nplatforms: [linux/amd64]\nsif: {compression: xz}\n", ["validate"],
     [C, "sif.compression"]),
    ("cli-sif-level", None, None, None,
     ["build", "scipy-hpc", "--format", "sif", "--sif-level", "12"],
     ["--sif-level 12", "gzip's levels are 1-9"]),
    ("cli-export-target", None, None, None, ["export", "slurm"], ["slurm"]),
    ("cli-export-missing", None, None, None,
     ["export", "kubespawner", "--published", "nope.json"], ["nope.json"]),
    ("cli-export-corrupt", None, None, None,
     ["export", "kubespawner", "--published", "catalog.yaml"], ["catalog.yaml",
                                                                  "not a published catalog"]),
    ("cli-inspect-not-sif", None, None, None, ["inspect", "catalog.yaml"],
     ["catalog.yaml", "not a SIF"]),
    ("cli-inspect-missing", None, None, None, ["inspect", "nope.sif"], ["nope.sif"]),
    ("cli-ssh", None, None, None, ["spawner", "batchspawner", "scipy-hpc", "--ssh", "a b"],
     ["--ssh"]),
    ("cli-ssh-config-alone", None, None, None,
     ["spawner", "batchspawner", "scipy-hpc", "--ssh-config", "x"], ["--ssh-config"]),
    ("cli-run-cmd-image", None, None, None, ["run-cmd", "scipyhpc"], ["scipyhpc"]),
    ("cli-test-image", None, None, None, ["test", "nope"], ["nope"]),
    ("cli-publish-image", None, None, None, ["publish", "nope"], ["nope"]),
    ("cli-catalog-missing", None, None, None, ["validate", "--catalog", "nope.yaml"],
     ["nope.yaml", "not found"]),
]


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    for name in ("stacks", "profiles"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "catalog.yaml", tmp_path / "catalog.yaml")
    return tmp_path


def test_there_are_at_least_sixty_cases() -> None:
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("case", "file", "old", "new", "argv", "names"), CASES,
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_and_nothing_is_done(
        copy: Path, monkeypatch: pytest.MonkeyPatch, case: str, file: str | None,
        old: str | None, new: str | bytes | None, argv: list[str], names: list[str]) -> None:
    if file is not None:
        path = copy / file
        if old is None:
            path.write_text(str(new))
        else:
            text = path.read_text()
            assert old in text, f"{case}: {old!r} not in {file}"
            if isinstance(new, bytes):
                path.write_bytes(text.replace(old, "", 1).encode() + b"\n" + new + b"\n"
                                 if old == "pip:" else text.encode().replace(old.encode(), new))
            else:
                path.write_text(text.replace(old, str(new), 1))
    before = sorted(p.relative_to(copy) for p in copy.rglob("*"))
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{copy}/no-engine.sock")
    monkeypatch.setenv("COLUMNS", "200")
    if "--catalog" not in argv and argv[0] != "inspect":
        argv = [*argv, "--catalog", str(copy / "catalog.yaml")]
    result = CliRunner().invoke(app, argv, catch_exceptions=False)
    output = result.output
    assert result.exit_code == 2, f"{case}: exit {result.exit_code}\n{output}"
    assert "Traceback" not in output
    for name in names:
        assert name in output, f"{case}: {name!r} not named in\n{output}"
    # Nothing rendered, built, written: the project holds exactly what it held.
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == before
    assert not (copy / "recipes").exists() and not (copy / "dist").exists()
