"""Amazon S3 (and S3-compatible) artifact store through boto3: ``pip install 'mlplatform[s3]'``."""
