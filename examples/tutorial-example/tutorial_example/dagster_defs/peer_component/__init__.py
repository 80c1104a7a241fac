"""Step 1 (peer) as YAML: the components of this folder (see ``peer_yaml.py``)."""
