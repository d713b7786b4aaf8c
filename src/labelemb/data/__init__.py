"""Dataset readers (one per on-disk format), downloads and the named-dataset registry."""
