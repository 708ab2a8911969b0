"""The container engine: one interface (client.Engine) with two engines, Docker and Podman
(podman.py), chosen per run (choice.py); the builders behind it (BuildKit and the SDK's
classic builder for Docker, buildah for Podman), build contexts, and the base image."""
