"""The container engine: one interface (client.Engine, with Container handles and
EngineError) behind which Docker and Podman (podman.py) live, chosen per run (choice.py); the
builders behind it (BuildKit and the SDK's classic builder for Docker, buildah for Podman),
build contexts, and the base image. Only this package imports the docker SDK (import-linter
checks it); it may import the recipes, the lock and the model below it, never a step that
uses it (build, checks, SIF, publishing)."""
