"""Data: a source's files -> the canonical table and image cache (registry and importers, the synthetic default,
quality checks, preprocessing, lesion-grouped splits, the diagnostic taxonomy, skin tone)."""
