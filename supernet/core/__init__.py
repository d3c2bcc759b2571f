"""The floor every other part stands on: errors, typed configs and their flags, files, metrics,
processes under torchrun, the web UI's port, and the narrow NNI 3.0 patches. Imports nothing above it."""
