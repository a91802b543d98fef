"""HashiCorp Vault / OpenBao secret backend (KV v2) through hvac: ``pip install 'mlplatform[vault]'``."""
