"""keel: from raw data to an audited, deployed and watched model."""

__version__ = "0.1.0"
