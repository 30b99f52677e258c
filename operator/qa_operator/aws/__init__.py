"""AWS adapters: the only place boto3 clients are used."""
