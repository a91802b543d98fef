"""Azure Blob Storage artifact store: ``pip install 'mlplatform[azure]'``."""
