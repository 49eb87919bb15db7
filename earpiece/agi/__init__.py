"""PBX attachment: AMI, ARI, FastAGI, call registry and call state machine."""
