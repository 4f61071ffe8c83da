"""softhard: the command-line entry point that ties data/, models/, train/ and analysis/ together."""
