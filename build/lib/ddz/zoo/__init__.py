"""The PTM zoo: training, the safetensors store, the registry and query language, the hub."""
