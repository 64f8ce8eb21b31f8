"""One module per component; see components/registry.py."""
