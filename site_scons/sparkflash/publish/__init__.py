"""Releases in object storage: publish a signed release to S3, fetch and verify one back."""
