"""The data wing: dataset readers, data checks, video decoding and preparation."""
