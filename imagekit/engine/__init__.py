"""The container engine: the docker SDK for images and containers, two builders behind one
interface (the SDK's classic builder and BuildKit through a docker CLI), and the base image."""
