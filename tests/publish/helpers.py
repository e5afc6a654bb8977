"""Helpers for the publish tests' own checks (plain functions, no fixtures)."""

from __future__ import annotations

import hashlib


def images_with(glance_client, fingerprint: str) -> list[dict]:
    """Every image (any status) whose bake_fingerprint is ``fingerprint``."""
    return list(glance_client.images.list(filters={"bake_fingerprint": fingerprint}))


def sha256_of_download(glance_client, image_id: str) -> str:
    digest = hashlib.sha256()
    for chunk in glance_client.images.data(image_id):
        digest.update(chunk)
    return digest.hexdigest()
