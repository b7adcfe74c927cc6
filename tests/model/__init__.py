"""The model wing: nn modules, skeleton geometry, whole-model capture, pretrained files."""
